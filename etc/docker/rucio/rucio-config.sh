# Sourced by /docker-entrypoint.sh and /start-daemon.sh: what both do before their process starts.

# rucio.cfg: a mounted one is kept; otherwise the defaults, the RUCIO_OVERRIDE_CONFIGS files (space-separated)
# and the RUCIO_CFG_<SECTION>_<OPTION> variables are merged into it.
rucio_config() {
    if [ -f /opt/rucio/etc/rucio.cfg ]; then
        echo "rucio.cfg already mounted."
    else
        echo "rucio.cfg not found: merging /tmp/rucio.config.default.cfg ${RUCIO_OVERRIDE_CONFIGS:-}"
        # shellcheck disable=SC2086  # several files, separated by spaces
        python3 /usr/local/rucio/tools/merge_rucio_configs.py --use-env \
            -s /tmp/rucio.config.default.cfg ${RUCIO_OVERRIDE_CONFIGS:-} -d /opt/rucio/etc/rucio.cfg
    fi
    if [ -n "${RUCIO_PRINT_CFG:-}" ]; then
        echo "=================== /opt/rucio/etc/rucio.cfg ============================"
        cat /opt/rucio/etc/rucio.cfg
    fi
}

# Grid CAs mounted at /etc/grid-security/certificates join the system's trust, as in Rucio's images.
rucio_trust_grid_cas() {
    if [ -d /etc/grid-security/certificates ] && ls /etc/grid-security/certificates/*.pem >/dev/null 2>&1; then
        echo "Adding Grid CAs to the system trust."
        cp /etc/grid-security/certificates/*.pem /usr/local/share/ca-certificates/ 2>/dev/null || true
        for pem in /usr/local/share/ca-certificates/*.pem; do mv "$pem" "${pem%.pem}.crt"; done
        update-ca-certificates >/dev/null
    fi
}

# Rucio's cache region in every process of the image, as upstream starts it.
rucio_memcached() {
    memcached -u memcache -l 127.0.0.1 -p 11211 -m "${1:-64}" -c 1024 &
}
