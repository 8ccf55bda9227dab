-- The role the pgvigil sidecar connects as: ANALYZE and archival of the application tables.
--
--   psql -d chat -v maintenance_role=pgvigil_maintenance -v app_tables=public.messages \
--        -f sql/maintenance_role.sql
--   psql -d chat -c '\password pgvigil_maintenance'   -- a SCRAM hash, never plain text
--
-- What each job needs, and what this grants:
--   archive   SELECT and DELETE on each application table, UPDATE on its primary key columns
--             only (SELECT ... FOR UPDATE SKIP LOCKED asks for UPDATE on some column); CREATE
--             on its schema, so that the sidecar creates `<table>_archive` itself and owns
--             it (it may then insert into and ANALYZE it).
--             An archive table that already exists gets SELECT and INSERT.
--   analyze   ANALYZE is reserved to a table's owner before PostgreSQL 17. On 17 and later
--             the role gets the MAINTAIN privilege on each application table, nothing more.
--             On 15 and 16 it becomes a member of the role owning the application tables
--             (on 16 WITH SET FALSE: it cannot SET ROLE to it, nor create objects as it).
--             That membership carries the owner's other powers (ALTER, DROP of those tables);
--             pass -v analyze=off to withhold it: archival still works, the analyze job then
--             skips tables it does not own (PostgreSQL answers with a warning) and autovacuum's
--             own ANALYZE remains in charge of them. Tables owned by a superuser are never
--             shared this way: give them an ordinary owner role first.
--   report, health checks   pg_monitor (read-only statistics; no table data).
--
-- Variables (psql -v NAME=VALUE), all optional:
--   maintenance_role  (default pgvigil_maintenance)
--   app_tables        comma-separated application tables (default public.messages)
--   analyze           on | off (default on)
--   archive_suffix    (default _archive, as sidecar.archive.suffix)
--
-- Idempotent. Run it as a superuser (or a CREATEROLE role owning the tables) in the watched
-- database; run it again after adding an application table.

\set ON_ERROR_STOP on
\if :{?maintenance_role}
\else
  \set maintenance_role pgvigil_maintenance
\endif
\if :{?app_tables}
\else
  \set app_tables public.messages
\endif
\if :{?analyze}
\else
  \set analyze on
\endif
\if :{?archive_suffix}
\else
  \set archive_suffix _archive
\endif

-- psql does not expand variables inside dollar quotes; pass them as session settings.
SELECT set_config('pgvigil.maintenance_role', :'maintenance_role', false),
       set_config('pgvigil.app_tables', :'app_tables', false),
       set_config('pgvigil.analyze', :'analyze', false),
       set_config('pgvigil.archive_suffix', :'archive_suffix', false) \gset

DO $$
DECLARE
  r text := current_setting('pgvigil.maintenance_role');
  want_analyze boolean := current_setting('pgvigil.analyze')::boolean;
  suffix text := current_setting('pgvigil.archive_suffix');
  version int := current_setting('server_version_num')::int;
  t text;
  tbl regclass;
  nsp text;
  rel text;
  owner_name text;
  owner_super boolean;
  archive regclass;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
    EXECUTE format('CREATE ROLE %I LOGIN', r);
  END IF;
  EXECUTE format(
    'ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT', r);
  EXECUTE format('GRANT pg_monitor TO %I', r);
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);

  FOREACH t IN ARRAY string_to_array(current_setting('pgvigil.app_tables'), ',') LOOP
    tbl := to_regclass(trim(t));
    IF tbl IS NULL THEN
      RAISE WARNING 'pgvigil: table % does not exist (yet); run this script again later', t;
      CONTINUE;
    END IF;
    SELECT n.nspname, c.relname, o.rolname, o.rolsuper
      INTO nsp, rel, owner_name, owner_super
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_roles o ON o.oid = c.relowner
     WHERE c.oid = tbl;
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO %I', nsp, r);
    EXECUTE format('GRANT SELECT, DELETE ON %s TO %I', tbl, r);
    -- SELECT ... FOR UPDATE wants UPDATE on at least one column: the key columns only.
    IF EXISTS (SELECT FROM pg_index WHERE indrelid = tbl AND indisprimary) THEN
      EXECUTE format('GRANT UPDATE (%s) ON %s TO %I',
        (SELECT string_agg(quote_ident(a.attname), ', ')
           FROM pg_index i JOIN pg_attribute a
             ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
          WHERE i.indrelid = tbl AND i.indisprimary), tbl, r);
    END IF;
    archive := to_regclass(format('%I.%I', nsp, rel || suffix));
    IF archive IS NOT NULL THEN
      EXECUTE format('GRANT SELECT, INSERT ON %s TO %I', archive, r);
    END IF;

    IF NOT want_analyze THEN
      CONTINUE;
    ELSIF version >= 170000 THEN
      EXECUTE format('GRANT MAINTAIN ON %s TO %I', tbl, r);
    ELSIF owner_super THEN
      RAISE WARNING 'pgvigil: % is owned by the superuser %, whose powers are never shared: '
        'ALTER TABLE % OWNER TO <an ordinary role> and run this again (archival works anyway)',
        tbl, owner_name, tbl;
    ELSIF owner_name <> r
      AND NOT pg_has_role(r, owner_name, 'USAGE') THEN
      IF version >= 160000 THEN
        EXECUTE format('GRANT %I TO %I WITH INHERIT TRUE, SET FALSE', owner_name, r);
      ELSE
        EXECUTE format('GRANT %I TO %I', owner_name, r);
      END IF;
    END IF;
  END LOOP;
END
$$;
