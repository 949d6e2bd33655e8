-- Fixed queries used by the Python runner, one per `-- name:` header.
-- Rendered with {{ schema }}; values are positional $n parameters (psycopg RawCursor).

-- name: init_lock
SELECT pg_advisory_xact_lock(hashtext('{{ schema }}'), 0);

-- name: deploy_badge
SELECT {{ schema }}.deploy_badge($1::jsonb);

-- name: set_rule_timeout
-- The rule's own timeout, else the configured default, for the next statement of this
-- transaction (the one calling run_rule).
SELECT set_config(
    'statement_timeout',
    coalesce((SELECT timeout FROM {{ schema }}.badge WHERE slug = $1), $2),
    true);

-- name: run_rule
SELECT run_id, status, granted, progressed, levels, message
FROM {{ schema }}.run_rule($1, $2, $3::text[], $4, $5);

-- name: deployed_badges
SELECT slug, enabled, dirty FROM {{ schema }}.badge ORDER BY slug;

-- name: user_grants
SELECT b.name AS badge_name, ub.badge, ub.level, l.name AS level_name, ub.scope,
       ub.achieved_at, ub.source, l.points
FROM {{ schema }}.user_badge AS ub
JOIN {{ schema }}.badge AS b ON b.slug = ub.badge
JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
WHERE ub.user_id = $1
ORDER BY ub.achieved_at, b.name, l.position, ub.scope;

-- name: user_progress
SELECT b.name AS badge_name, p.badge, p.scope, p.value, l.name AS next_name,
       l.threshold AS next_threshold
FROM {{ schema }}.user_progress AS p
JOIN {{ schema }}.badge AS b ON b.slug = p.badge
JOIN {{ schema }}.badge_level AS l ON l.badge = p.badge AND l.key = p.next_level
WHERE p.user_id = $1 AND b.enabled
ORDER BY p.value / l.threshold DESC, b.name, p.scope;

-- name: grant_summary
-- Grants per badge and level, for the backfill summary.
SELECT b.slug, b.name AS badge_name, l.key AS level, l.name AS level_name,
       count(ub.user_id) AS grants
FROM {{ schema }}.badge AS b
JOIN {{ schema }}.badge_level AS l ON l.badge = b.slug
LEFT JOIN {{ schema }}.user_badge AS ub ON ub.badge = l.badge AND ub.level = l.key
WHERE b.slug = ANY($1::text[])
GROUP BY b.slug, b.name, l.key, l.name, l.position
ORDER BY b.slug, l.position;

-- name: deployed_hashes
SELECT slug, definition_hash FROM {{ schema }}.badge WHERE slug = ANY($1::text[]);

-- name: demo_tables_foreign
-- Non-NULL when the database holds a `users` table that the demo did not create: the demo
-- truncates its tables, so it refuses to run there.
SELECT c.oid::regclass::text AS table_name
FROM pg_class AS c
WHERE c.oid = to_regclass('public.users')
  AND obj_description(c.oid, 'pg_class') IS DISTINCT FROM 'plaudit demo app';

-- name: demo_generate
SELECT table_name, row_count FROM public.demo_generate($1, $2);

-- name: demo_reset_schema
DROP SCHEMA IF EXISTS {{ schema }} CASCADE;

-- name: demo_showcase_user
-- The demo's trophy case: the user with the most grants (ties by points) among those still
-- on their way to a next level, so the case shows grants and progress.
SELECT ub.user_id::text AS user_id
FROM {{ schema }}.user_badge AS ub
JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
WHERE EXISTS (SELECT FROM {{ schema }}.user_progress AS p
              WHERE p.user_id = ub.user_id AND p.next_level IS NOT NULL)
GROUP BY ub.user_id
ORDER BY count(*) DESC, sum(l.points) DESC, ub.user_id
LIMIT 1;
