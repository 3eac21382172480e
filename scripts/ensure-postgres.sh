#!/usr/bin/env bash
# Make sure a PostgreSQL server answers at 127.0.0.1:5432 with trust auth for user `postgres`,
# as the control plane's tests expect. If one already answers, do nothing. Otherwise install
# Debian's `postgresql` package (needs root and the Debian mirror), allow trust auth on
# 127.0.0.1, and start the cluster. Idempotent.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ready() {
  if [[ -x $root/.venv/bin/python ]]; then
    "$root/.venv/bin/python" -c 'import psycopg; psycopg.connect(
      "postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()' 2>/dev/null
  else
    psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
  fi
}

if ready; then
  echo >&2 "ensure-postgres: PostgreSQL answers at 127.0.0.1:5432"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo >&2 "ensure-postgres: no PostgreSQL at 127.0.0.1:5432 and not root: cannot install one"
  exit 1
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo >&2 "ensure-postgres: installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
conf=/etc/postgresql/$version/main
if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
fi
sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "$conf/postgresql.conf"
sed -i "s/^#\?port = .*/port = 5432/" "$conf/postgresql.conf"
pg_ctlcluster "$version" main restart || pg_ctlcluster "$version" main start
for _ in $(seq 1 30); do
  if ready; then
    echo >&2 "ensure-postgres: PostgreSQL $version started at 127.0.0.1:5432"
    exit 0
  fi
  sleep 1
done
echo >&2 "ensure-postgres: PostgreSQL did not come up at 127.0.0.1:5432"
exit 1
