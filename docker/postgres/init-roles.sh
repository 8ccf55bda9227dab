#!/bin/sh
# Runs once, from /docker-entrypoint-initdb.d, when the postgres container creates its volume:
# the application database, the sidecar's maintenance role (docker/postgres/roles.sql) and the
# exporter's read-only role (sql/monitoring_role.sql, the same script a user runs by hand).
set -eu
APP_DB="${APP_DB:-chat}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v app_db="$APP_DB" \
    -v app_owner="${APP_OWNER:-chat}" \
    -v maintenance_password="$PGVIGIL_MAINTENANCE_PASSWORD" \
    -f "${PGVIGIL_SQL_DIR:-/etc/pgvigil}/roles.sql"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$APP_DB" \
    -v monitor_role=pgvigil_monitor \
    -f "${PGVIGIL_SQL_DIR:-/etc/pgvigil}/monitoring_role.sql"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$APP_DB" \
    -v monitor_password="$PGVIGIL_MONITOR_PASSWORD" <<'SQL'
ALTER ROLE pgvigil_monitor PASSWORD :'monitor_password';
SQL
