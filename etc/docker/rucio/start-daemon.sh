#!/bin/sh
# Runs the Rucio daemon named by RUCIO_DAEMON (rucio-$RUCIO_DAEMON $RUCIO_DAEMON_ARGS), as rucio/rucio-daemons
# does: any daemon installed in the image, a policy package's own daemons included.
set -e
. /usr/local/lib/rucio-config.sh

if [ -z "${RUCIO_DAEMON:-}" ]; then
    echo "start-daemon: RUCIO_DAEMON is not set (e.g. RUCIO_DAEMON=judge-evaluator)" >&2
    exit 64
fi
if ! command -v "rucio-$RUCIO_DAEMON" >/dev/null 2>&1; then
    echo "start-daemon: no daemon rucio-$RUCIO_DAEMON in this image" >&2
    exit 64
fi
rucio_config
rucio_trust_grid_cas
rucio_memcached 64

echo "starting daemon with: $RUCIO_DAEMON ${RUCIO_DAEMON_ARGS:-}"
if [ -z "${RUCIO_ENABLE_LOGS:-}" ]; then
    eval "exec rucio-$RUCIO_DAEMON ${RUCIO_DAEMON_ARGS:-}"
fi
eval "exec rucio-$RUCIO_DAEMON ${RUCIO_DAEMON_ARGS:-} >> /var/log/rucio/daemon.log 2>> /var/log/rucio/error.log"
