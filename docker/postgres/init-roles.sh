#!/bin/sh
# Runs once, from /docker-entrypoint-initdb.d, when the postgres container creates its volume.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v app_db="${APP_DB:-chat}" \
    -v app_owner="${APP_OWNER:-chat}" \
    -v monitor_password="$PGVIGIL_MONITOR_PASSWORD" \
    -v maintenance_password="$PGVIGIL_MAINTENANCE_PASSWORD" \
    -f /etc/pgvigil/roles.sql
