-- The role the pgvigil exporter connects as: read-only, statistics only.
--
--   psql -d chat -v monitor_role=pgvigil_monitor -f sql/monitoring_role.sql
--   psql -d chat -c '\password pgvigil_monitor'      -- sets a SCRAM hash, never plain text
--
-- pg_monitor (PostgreSQL 10+) lets the role read every statistics view and setting the
-- collectors use (pg_stat_*, pg_database_size, data_directory) without any right to read
-- or change application data. The only data it may read are the timestamp and dimension
-- columns of the application tables (`application_tables` in pgvigil.yml), which the
-- rows-in-the-last-24h and per-provider figures count; never the message content. It
-- may also read the sequences of the application tables' schemas (how far each has gone,
-- for the sequences collector), which hold no data.
--
-- Variables (psql -v NAME=VALUE), all optional:
--   monitor_role  the role to create or fix up       (default pgvigil_monitor)
--   app_tables    comma-separated application tables  (default public.messages)
--   app_columns   columns it may read where present   (default created_at,provider,message_type)
--
-- Idempotent: run it again after adding a table or upgrading. Run it as a superuser or a
-- role with CREATEROLE that owns the tables, in the database to be watched.

\set ON_ERROR_STOP on
\if :{?monitor_role}
\else
  \set monitor_role pgvigil_monitor
\endif
\if :{?app_tables}
\else
  \set app_tables public.messages
\endif
\if :{?app_columns}
\else
  \set app_columns created_at,provider,message_type
\endif

-- psql does not expand variables inside dollar quotes; pass them as session settings.
SELECT set_config('pgvigil.monitor_role', :'monitor_role', false),
       set_config('pgvigil.app_tables', :'app_tables', false),
       set_config('pgvigil.app_columns', :'app_columns', false) \gset

DO $$
DECLARE
  r text := current_setting('pgvigil.monitor_role');
  t text;
  c text;
  tbl regclass;
BEGIN
  -- CREATE ROLE has no IF NOT EXISTS; this keeps the script re-runnable.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
    EXECUTE format('CREATE ROLE %I LOGIN', r);
  END IF;
  -- Whatever the role was before, it gets no power beyond reading statistics.
  EXECUTE format(
    'ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', r);
  -- Belt and braces: a mistaken write is refused, a runaway query stops.
  EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', r);
  EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', r, '30s');
  EXECUTE format('GRANT pg_monitor TO %I', r);
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);

  FOREACH t IN ARRAY string_to_array(current_setting('pgvigil.app_tables'), ',') LOOP
    tbl := to_regclass(trim(t));
    IF tbl IS NULL THEN
      RAISE WARNING 'pgvigil: table % does not exist (yet); run this script again later', t;
      CONTINUE;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I',
                   (SELECT nspname FROM pg_namespace n JOIN pg_class k ON k.relnamespace = n.oid
                    WHERE k.oid = tbl), r);
    -- pg_sequences shows how far a sequence has gone only to a role that may read it.
    EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I',
                   (SELECT nspname FROM pg_namespace n JOIN pg_class k ON k.relnamespace = n.oid
                    WHERE k.oid = tbl), r);
    FOREACH c IN ARRAY string_to_array(current_setting('pgvigil.app_columns'), ',') LOOP
      IF EXISTS (SELECT FROM pg_attribute
                 WHERE attrelid = tbl AND attname = trim(c) AND attnum > 0 AND NOT attisdropped)
      THEN
        EXECUTE format('GRANT SELECT (%I) ON %s TO %I', trim(c), tbl, r);
      END IF;
    END LOOP;
  END LOOP;
END
$$;
