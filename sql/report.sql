-- The queries of `plaudit report` (src/plaudit/report/), one per `-- name:` header, like
-- sql/queries.sql. Rendered with {{ schema }}; values are positional $n parameters. The report
-- only reads; its leaderboards and trophy cases are plaudit.leaderboard, rank_of and
-- trophy_case, as for `plaudit leaderboard` and `plaudit user`.

-- name: report_snapshot
-- Every page from one snapshot, whatever runs meanwhile. First statement of the report's
-- transaction.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: report_levels
-- Every deployed badge and level with its face, texts in locale $1 where the rule translates
-- them (plaudit.localized, as the trophy case), in the trophy case's order: plaudit.yaml's
-- categories, the rule's `order:`, name. `listed`: the catalogue shows it (not secret; a
-- disabled badge only while someone holds it). Secret badges are read too: a user page shows
-- them once earned, with their icons.
SELECT b.slug AS badge,
       {{ schema }}.localized(b.i18n, $1, '{name}', b.name) AS badge_name,
       {{ schema }}.localized(b.i18n, $1, '{description}', nullif(b.description, ''))
           AS badge_description,
       b.category,
       {{ schema }}.localized(c.i18n, $1, '{}', coalesce(c.name, b.category)) AS category_name,
       b.kind, b.enabled,
       NOT b.secret AND (b.enabled OR EXISTS (SELECT FROM {{ schema }}.user_badge AS ub
                                              WHERE ub.badge = b.slug)) AS listed,
       l.key AS level, l.position,
       -- a level named like its badge (an award's single level) takes its translated name
       {{ schema }}.localized(b.i18n, $1, ARRAY['levels', l.key, 'name'],
           CASE WHEN l.name = b.name THEN {{ schema }}.localized(b.i18n, $1, '{name}', b.name)
                ELSE l.name END) AS level_name,
       l.threshold, l.points, l.icon,
       {{ schema }}.localized(b.i18n, $1, ARRAY['levels', l.key, 'description'], l.description)
           AS level_description
FROM {{ schema }}.badge AS b
JOIN {{ schema }}.badge_level AS l ON l.badge = b.slug
LEFT JOIN {{ schema }}.category AS c ON c.key = b.category
ORDER BY c.position NULLS LAST, b.category NULLS LAST, b.sort_order NULLS LAST, 2, b.slug,
         l.position;

-- name: report_holders
-- Per badge and level: holders, the users holding it (in any scope, each once); players, the
-- users with a progress or grant row for the badge (rarity = holders / players).
WITH holders AS (
    SELECT ub.badge, ub.level, count(DISTINCT ub.user_id) AS holders
    FROM {{ schema }}.user_badge AS ub
    GROUP BY 1, 2
),
players AS (
    SELECT t.badge, count(DISTINCT t.user_id) AS players
    FROM (SELECT p.badge, p.user_id FROM {{ schema }}.user_progress AS p
          UNION ALL
          SELECT ub.badge, ub.user_id FROM {{ schema }}.user_badge AS ub) AS t
    GROUP BY 1
)
SELECT l.badge, l.key AS level, coalesce(h.holders, 0) AS holders,
       coalesce(p.players, 0) AS players
FROM {{ schema }}.badge_level AS l
LEFT JOIN holders AS h ON h.badge = l.badge AND h.level = l.key
LEFT JOIN players AS p ON p.badge = l.badge
ORDER BY l.badge, l.position;

-- name: report_grants_per_week
-- Grants achieved per ISO week (Monday 00:00 in timezone $1), from the week of the first grant
-- to the current one, weeks without grants included (0). Grants at an infinite time or in the
-- future are in no week.
WITH weekly AS (
    SELECT date_trunc('week', ub.achieved_at AT TIME ZONE $1)::date AS week, count(*) AS grants
    FROM {{ schema }}.user_badge AS ub
    WHERE isfinite(ub.achieved_at) AND ub.achieved_at <= now()
    GROUP BY 1
)
SELECT s.week::date AS week, coalesce(w.grants, 0) AS grants
FROM generate_series((SELECT min(week) FROM weekly),
                     date_trunc('week', now() AT TIME ZONE $1)::date, interval '1 week')
    AS s (week)
LEFT JOIN weekly AS w ON w.week = s.week::date
ORDER BY 1;

-- name: report_totals
-- The report's headline: users holding a grant, grants, badges deployed.
SELECT (SELECT count(DISTINCT ub.user_id) FROM {{ schema }}.user_badge AS ub) AS users,
       (SELECT count(*) FROM {{ schema }}.user_badge AS ub) AS grants,
       (SELECT count(*) FROM {{ schema }}.badge AS b) AS badges;

-- name: report_users
-- Every user holding a grant, for `--users all`.
SELECT DISTINCT ub.user_id FROM {{ schema }}.user_badge AS ub ORDER BY 1;

-- name: report_recent_grants
-- A user's ($1) latest grants, newest first, at most $2.
SELECT ub.badge, ub.level, ub.scope, ub.achieved_at, ub.source, l.points
FROM {{ schema }}.user_badge AS ub
JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
WHERE ub.user_id = $1
ORDER BY ub.achieved_at DESC, l.position DESC, ub.badge, ub.scope
LIMIT $2;

-- name: report_user_id
-- Fails unless $1 reads as a user id (plaudit.yaml's user_id_type): a --user checked before
-- any page is written.
SELECT ub.user_id FROM {{ schema }}.user_badge AS ub WHERE ub.user_id = $1 LIMIT 0;
