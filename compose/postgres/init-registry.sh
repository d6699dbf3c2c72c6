#!/usr/bin/env bash
# First start of Postgres only (docker-entrypoint-initdb.d): a database and an
# owner for the Schema Registry beside Airflow's metadata database.
set -euo pipefail
: "${REGISTRY_DB_PASSWORD:?REGISTRY_DB_PASSWORD is not set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v pwd="$REGISTRY_DB_PASSWORD" <<'SQL'
CREATE ROLE registry LOGIN PASSWORD :'pwd';
CREATE DATABASE registry OWNER registry;
SQL
