-- The queries of `plaudit export` (src/plaudit/runtime/export.py), one per `-- name:` header,
-- like sql/queries.sql. Rendered with {{ schema }}; values are positional $n parameters.

-- name: export_snapshot
-- The definitions and every grant from one snapshot, whatever runs meanwhile; an export
-- writes nothing. First statement of the export's transaction.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: export_timezone
-- Times are written in UTC (to_json of a timestamptz uses the session's zone): the same
-- bytes whatever the server's or the caller's TimeZone.
SELECT set_config('TimeZone', 'UTC', true);

-- name: export_definitions
-- Every deployed badge with its levels, in level order: definitions.json, and what an Open
-- Badges achievement is built from (runtime/openbadges.py). What a level says about itself
-- (its name, threshold, points, icon) is read here and only here: a new level column is one
-- more line below and one more field in export.Level.
SELECT b.slug, b.name AS badge_name, b.description, b.kind, b.tags, b.enabled,
       l.key AS level, l.name AS level_name, l.threshold::text AS threshold, l.points, l.icon
FROM {{ schema }}.badge AS b
JOIN {{ schema }}.badge_level AS l ON l.badge = b.slug
ORDER BY b.slug, l.position;

-- name: export_grants
-- The grants, one row each, streamed (never fetched whole): $1 the badges (NULL: all), $2 one
-- user (NULL: all; its type is user_id's), $3 achieved on or after (NULL: all). Planned with
-- the values, so a NULL's condition folds away and a user's uses the primary key. In primary
-- key order: a re-export is byte-identical. Numbers and meta come as PostgreSQL writes them
-- (exact), times as ISO 8601 in UTC.
SELECT ub.user_id, ub.badge, ub.level, ub.scope,
       to_json(ub.achieved_at) #>> '{}' AS achieved_at,
       to_json(ub.awarded_at) #>> '{}' AS awarded_at,
       ub.value::text AS value, l.points, ub.meta::text AS meta
FROM {{ schema }}.user_badge AS ub
JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
WHERE ($1::text[] IS NULL OR ub.badge = ANY ($1::text[]))
  AND (ub.user_id = $2 OR $2 IS NULL)  -- this order: the first $2 gives the second its type
  AND ($3::timestamptz IS NULL OR ub.achieved_at >= $3::timestamptz)
ORDER BY ub.user_id, ub.badge, ub.level, ub.scope;
