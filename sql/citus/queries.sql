-- The named queries of plaudit on Citus (runtime/citus.py). Rendered with {{ schema }}.

-- name: citus_installed
-- whether this database has the citus extension (CREATE EXTENSION citus)
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') AS installed;

-- name: citus_distributed
-- whether plaudit's grants are a distributed table here (`plaudit init --citus` ran); asked
-- only where citus_installed says the catalog exists
SELECT EXISTS (SELECT FROM pg_dist_partition
               WHERE logicalrelid = to_regclass('{{ schema }}.user_badge')) AS distributed;

-- name: citus_placement
-- where each of plaudit's tables lives: distributed (with its column), reference, or local
SELECT c.relname AS table_name,
       CASE WHEN p.partmethod = 'h' THEN 'distributed by ' || p.column_name
            WHEN p.partmethod = 'n' AND p.repmodel = 't' THEN 'reference'
            WHEN p.partmethod = 'n' THEN 'coordinator (citus local)'
            ELSE 'coordinator' END AS placement
FROM pg_class AS c
LEFT JOIN LATERAL (
    SELECT d.partmethod, d.repmodel, column_to_column_name(d.logicalrelid, d.partkey) AS column_name
    FROM pg_dist_partition AS d WHERE d.logicalrelid = c.oid) AS p ON true
WHERE c.relnamespace = '{{ schema }}'::regnamespace AND c.relkind IN ('r', 'p')
ORDER BY c.relname;

-- name: citus_routes
-- how each deployed rule's complete backfill runs on Citus: on the workers or through the
-- coordinator, and why (013_citus.sql citus_route, from Citus's EXPLAIN)
SELECT c.badge AS slug, r.route, r.reason
FROM {{ schema }}.compiled_rule AS c
CROSS JOIN LATERAL {{ schema }}.citus_route(
    c.sql, '{}', (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'rule_search_path')) AS r
WHERE c.mode = 'backfill'
ORDER BY c.badge;

-- name: citus_rule_route
-- one rule's: its rendered backfill SQL $1 with params $2
SELECT r.route, r.reason
FROM {{ schema }}.citus_route($1, $2::text[], (SELECT m.value FROM {{ schema }}.meta AS m
                                              WHERE m.key = 'rule_search_path')) AS r;
