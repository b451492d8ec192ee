#!/usr/bin/env bash
# Initialise an empty data directory the way the official postgres image does, then run the server.
set -euo pipefail
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-${user}}
if [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD}" >"${pwfile}"
  initdb --username="${user}" --pwfile="${pwfile}" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 >/dev/null
  rm -f "${pwfile}"
  echo "host all all all scram-sha-256" >>"${PGDATA}/pg_hba.conf"
  if [[ "${db}" != postgres ]]; then
    postgres --single -D "${PGDATA}" postgres <<<"CREATE DATABASE \"${db}\" OWNER \"${user}\";" >/dev/null
  fi
fi
exec postgres -D "${PGDATA}" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
