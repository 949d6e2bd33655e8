-- The named queries of `init` (runtime/migrate.py): the server version check, the
-- migration bookkeeping, and the sweep of functions and views no schema file defines any more.
-- Rendered with {{ schema }}; parsed with sql/queries.sql (names are unique across both).

-- name: server_version_num
SELECT current_setting('server_version_num')::int AS num;

-- name: migration_table
-- Created before any migration runs (a migration cannot record itself in a table it creates);
-- with the schema, which the first migration may then find in place.
CREATE SCHEMA IF NOT EXISTS {{ schema }};
CREATE TABLE IF NOT EXISTS {{ schema }}.migration (
    version int PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version, name FROM {{ schema }}.migration ORDER BY version;

-- name: record_migration
INSERT INTO {{ schema }}.migration (version, name) VALUES ($1, $2);

-- name: plaudit_routines
-- plaudit's routines (functions and procedures of the names $1, extension members aside),
-- each as its regprocedure: what init marks before the schema files run (migrate.py). Routines
-- of other names that a site keeps in the schema are not plaudit's to drop.
SELECT p.oid::regprocedure::text AS routine
FROM pg_proc AS p
WHERE p.pronamespace = '{{ schema }}'::regnamespace AND p.prokind IN ('f', 'p')
  AND p.proname = ANY ($1::text[])
  AND NOT EXISTS (SELECT FROM pg_depend AS d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1;

-- name: stale_routines
-- After the schema files ran: the routines still marked stale (no file defines them), to
-- drop. Dropped one by one without CASCADE: a trigger or view that still uses one stops init
-- (rolled back) rather than disappearing with it.
SELECT p.oid::regprocedure::text AS routine,
       CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END AS kind
FROM pg_proc AS p
WHERE p.pronamespace = '{{ schema }}'::regnamespace
  AND 'application_name=plaudit: stale until init re-creates it' = ANY (p.proconfig)
ORDER BY 1;

-- name: stale_views
-- plaudit's views that no schema file defines any more: of the names $2 (plaudit's views of
-- earlier versions), those not among $1 (the names the files define). A view has no
-- overloads: its name is its identity. Views of other names are the site's own.
SELECT c.relname AS name FROM pg_class AS c
WHERE c.relnamespace = '{{ schema }}'::regnamespace AND c.relkind = 'v'
  AND c.relname = ANY ($2::text[]) AND NOT c.relname = ANY ($1::text[])
ORDER BY c.relname;
