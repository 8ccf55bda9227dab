-- Least-privilege roles for pgvigil, run once when the PostgreSQL volume is initialised
-- (docker/postgres/init-roles.sh passes the passwords as psql variables; nothing is hard-coded).
--
--   pgvigil              the exporter: reads statistics only (built-in role pg_monitor,
--                        which includes pg_read_all_settings for data_directory), no table data.
--   pgvigil_maintenance  the sidecar: ANALYZE and archival of the application's tables, which
--                        it gets as a member of the application's owner role, nothing more.
--
-- Variables: app_db, app_owner, monitor_password, maintenance_password.

SELECT format('CREATE ROLE %I NOLOGIN', :'app_owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_owner') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'app_db') \gexec

SELECT 'CREATE ROLE pgvigil LOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgvigil') \gexec
ALTER ROLE pgvigil WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'monitor_password';
-- Queries by the exporter never run long or wait on locks, whatever the client asks for.
ALTER ROLE pgvigil SET statement_timeout = '10s';
ALTER ROLE pgvigil SET lock_timeout = '1s';
GRANT pg_monitor TO pgvigil;

SELECT 'CREATE ROLE pgvigil_maintenance LOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgvigil_maintenance') \gexec
ALTER ROLE pgvigil_maintenance WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
    PASSWORD :'maintenance_password';
GRANT pg_monitor TO pgvigil_maintenance;
SELECT format('GRANT %I TO pgvigil_maintenance', :'app_owner') \gexec

SELECT format('GRANT CONNECT ON DATABASE %I TO pgvigil, pgvigil_maintenance', :'app_db') \gexec
