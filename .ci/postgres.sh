#!/usr/bin/env bash
# Start the PostgreSQL server the audit-store tests use: 127.0.0.1:5432, database `test`,
# user `postgres` with trust authentication on loopback only. The project's machines do not
# start PostgreSQL before a session, and a new machine may not have it installed at all, so
# this installs it from Debian's packages when missing. Idempotent: safe to run again.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "postgres: installing from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

version="$(ls /etc/postgresql | sort -V | tail -n 1)"
if [ ! -d "/etc/postgresql/$version/main" ]; then
    pg_createcluster "$version" main >/dev/null
fi
conf="/etc/postgresql/$version/main"

# Trust for loopback TCP only, placed first so it wins over the packaged scram-sha-256 lines.
hba="$conf/pg_hba.conf"
marker="# xgw-ci: loopback trust for the test suite"
if ! grep -qF "$marker" "$hba"; then
    tmp="$(mktemp)"
    {
        echo "$marker"
        echo "host    all             all             127.0.0.1/32            trust"
        echo "host    all             all             ::1/128                 trust"
        cat "$hba"
    } > "$tmp"
    cat "$tmp" > "$hba"
    rm -f "$tmp"
fi
# Listen on loopback at the port the tests expect.
sed -i -E "s/^#?port = .*/port = 5432/" "$conf/postgresql.conf"

if pg_ctlcluster "$version" main status >/dev/null 2>&1; then
    pg_ctlcluster "$version" main reload
else
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
done
pg_isready -h 127.0.0.1 -p 5432

exists="$(psql -h 127.0.0.1 -p 5432 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")"
if [ "$exists" != "1" ]; then
    psql -h 127.0.0.1 -p 5432 -U postgres -qc "CREATE DATABASE test"
fi
echo "postgres: ready on 127.0.0.1:5432, database test"
