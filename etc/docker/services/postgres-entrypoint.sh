#!/bin/sh
# PostgreSQL from Debian's package: a new data folder is made with POSTGRES_USER (password POSTGRES_PASSWORD)
# owning POSTGRES_DB; the server listens on every address of the container, passwords checked (scram).
# Extra arguments go to postgres (e.g. -c fsync=off for a throw-away test database).
set -e
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: POSTGRES_PASSWORD is not set" >&2
    exit 64
fi
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
install -d -o postgres -g postgres "$PGDATA" /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
    chown postgres /tmp/pwfile
    as_postgres "$bin/initdb" -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    as_postgres "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$database" != "postgres" ]; then
        as_postgres "$bin/createdb" -U "$user" -O "$user" "$database"
    fi
    as_postgres "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres-entrypoint: new database $database owned by $user"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
