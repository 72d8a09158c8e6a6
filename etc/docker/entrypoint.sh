#!/bin/sh
# Entrypoint of the rucio-magic images (Dockerfile.rucio-dev), installed as /usr/local/bin/rucio-magic-entrypoint.
#
# 1. Grid credentials: when $RUCIO_MAGIC_CERTS (default /certs) holds the dev certificates of Rucio's
#    upstream stack (rucio_ca.pem, ruciouser.pem, ruciouser.key.pem, ruciouser.certkey.pem), trust the CA,
#    put the user certificate where rucio.cfg expects it, and make an X.509 proxy for the XRootD client.
# 2. rucio.cfg: when RUCIO_OVERRIDE_CONFIGS is set, /opt/rucio/etc/rucio.cfg is written afresh from the
#    image's default configuration, those files and the RUCIO_CFG_* variables (Rucio's merge_rucio_configs.py).
# 3. RUCIO_MAGIC_WAIT_FOR: what to wait for before going on, at most RUCIO_MAGIC_WAIT_SECONDS (default 300),
#    space-separated: host:port (answers TCP, e.g. the database) or config:SECTION:OPTION (the option is in Rucio's
#    configuration table, as a bootstrap's last step sets it), so that daemons started with the stack neither fail
#    nor restart in a loop.
# 4. Then the given command, or without one the base image's own entrypoint (httpd for rucio-server,
#    the daemon named by RUCIO_DAEMON for rucio-daemons).
set -e

CERTS="${RUCIO_MAGIC_CERTS:-/certs}"
GRID=/etc/grid-security/certificates

if [ -f "$CERTS/rucio_ca.pem" ]; then
    mkdir -p "$GRID" /opt/rucio/etc /etc/pki/ca-trust/source/anchors
    cp "$CERTS/rucio_ca.pem" "$GRID/rucio_ca.pem"
    if command -v openssl >/dev/null 2>&1; then
        ca_hash=$(openssl x509 -noout -hash -in "$CERTS/rucio_ca.pem")
    else
        ca_hash=5fca1cb1  # subject hash of the upstream dev CA
    fi
    cp "$CERTS/rucio_ca.pem" "$GRID/$ca_hash.0"
    cp "$CERTS/rucio_ca.pem" /etc/pki/ca-trust/source/anchors/rucio_ca.pem
    if command -v update-ca-trust >/dev/null 2>&1; then
        update-ca-trust extract || echo "rucio-magic-entrypoint: update-ca-trust failed" >&2
    fi

    install -m 0644 "$CERTS/ruciouser.pem" /opt/rucio/etc/usercert.pem
    install -m 0400 "$CERTS/ruciouser.key.pem" /opt/rucio/etc/userkey.pem
    if [ -f "$CERTS/ruciouser.certkey.pem" ]; then
        install -m 0400 "$CERTS/ruciouser.certkey.pem" /opt/rucio/etc/usercertkey.pem
    else
        cat /opt/rucio/etc/usercert.pem /opt/rucio/etc/userkey.pem > /opt/rucio/etc/usercertkey.pem
        chmod 0400 /opt/rucio/etc/usercertkey.pem
    fi
    X509_CERT_DIR="$GRID"
    X509_USER_CERT=/opt/rucio/etc/usercert.pem
    X509_USER_KEY=/opt/rucio/etc/userkey.pem
    export X509_CERT_DIR X509_USER_CERT X509_USER_KEY

    if command -v xrdgsiproxy >/dev/null 2>&1; then
        proxy=/tmp/x509up_u$(id -u)
        if xrdgsiproxy init -cert "$X509_USER_CERT" -key "$X509_USER_KEY" -certdir "$GRID" \
                -f "$proxy" -valid 720:00 >/dev/null 2>&1; then
            X509_USER_PROXY="$proxy"
            export X509_USER_PROXY
        else
            echo "rucio-magic-entrypoint: no X.509 proxy made; XRootD clients use the certificate" >&2
        fi
    fi
fi

if [ -n "$RUCIO_OVERRIDE_CONFIGS" ]; then
    mkdir -p /opt/rucio/etc
    defaults=""
    [ -f /tmp/rucio.config.default.cfg ] && defaults=/tmp/rucio.config.default.cfg
    # shellcheck disable=SC2086  # several files may be given, separated by spaces
    python3 /usr/local/rucio/tools/merge_rucio_configs.py --use-env \
        -s $defaults $RUCIO_OVERRIDE_CONFIGS -d /opt/rucio/etc/rucio.cfg
fi

if [ -n "${RUCIO_MAGIC_WAIT_FOR:-}" ]; then
    python3 - ${RUCIO_MAGIC_WAIT_FOR} <<'WAIT'
import os, socket, sys, time
deadline = time.monotonic() + float(os.environ.get("RUCIO_MAGIC_WAIT_SECONDS", "300"))


def wait(what, ready):
    while True:
        try:
            if ready():
                return
            error = "not yet"
        except Exception as exc:  # the database may not answer yet, or lack the tables
            error = exc
        if time.monotonic() > deadline:
            sys.exit(f"rucio-magic-entrypoint: {what}: {error}")
        time.sleep(2)


def config_set(section, option):
    from rucio.core.config import has_option
    return has_option(section, option, use_cache=False)


for item in sys.argv[1:]:
    if item.startswith("config:"):
        section, _, option = item[len("config:"):].partition(":")
        wait(f"[{section}] {option} not in Rucio's configuration table", lambda: config_set(section, option))
    else:
        host, _, port = item.rpartition(":")
        wait(f"{item} does not answer", lambda: socket.create_connection((host, int(port)), timeout=3).close() or True)
WAIT
fi

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
for base in /docker-entrypoint.sh /start-daemon.sh; do
    if [ -x "$base" ]; then
        exec "$base"
    fi
done
echo "rucio-magic-entrypoint: no command given and no base entrypoint found" >&2
exit 64
