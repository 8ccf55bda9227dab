-- The application database and pgvigil's maintenance role, run once when the PostgreSQL volume
-- is initialised (docker/postgres/init-roles.sh passes the variables; no password is written
-- here). The exporter's read-only role comes from sql/monitoring_role.sql, run right after.
--
--   pgvigil_maintenance  the sidecar: ANALYZE and archival of the application's tables, which
--                        it may do as a member of the application's owner role; statistics
--                        through pg_monitor. No superuser, no CREATEDB, no CREATEROLE.
--
-- Variables: app_db, app_owner, maintenance_password.

SELECT format('CREATE ROLE %I NOLOGIN', :'app_owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_owner') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'app_db') \gexec

SELECT 'CREATE ROLE pgvigil_maintenance LOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgvigil_maintenance') \gexec
ALTER ROLE pgvigil_maintenance WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    PASSWORD :'maintenance_password';
-- A batch that waits on an application lock gives up quickly and is retried smaller.
ALTER ROLE pgvigil_maintenance SET lock_timeout = '2s';
GRANT pg_monitor TO pgvigil_maintenance;
SELECT format('GRANT %I TO pgvigil_maintenance', :'app_owner') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO pgvigil_maintenance', :'app_db') \gexec
