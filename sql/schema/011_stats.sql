-- Statistics (issue 14, second part): per badge and level, how many hold it, how rare it is,
-- how many grants came lately and how long users take from the first level to it; grants per
-- week; and the rules gone quiet. They only read. Rendered with {{ schema }} and
-- {{ user_id_type }} like the other schema files; re-created by every init.
--
-- Each statistic is one pass over the table it reads (no loop over badges): at 1M users and
-- 5M grants the whole of `plaudit stats` reads user_badge a few times (docs/operations.md,
-- "Statistics", has the figures). The functions are SECURITY DEFINER with a pinned
-- search_path, like the app's API (004_events.sql): an app or a dashboard role needs EXECUTE
-- on them, and SELECT on the views, never read access to plaudit's tables.

-- Per badge and level (every deployed badge, or those of p_badges), in level order:
--   holders: the users holding the level (a user holding it in several scopes counts once);
--   grants: its grant rows (one per user and scope);
--   players: the users with any progress or grant row for the badge; rarity: holders /
--     players in percent, two decimals (NULL without players);
--   achieved_day/_week/_month, awarded_day/_week/_month: the grants whose achieved_at (when
--     the criterion was met) or awarded_at (when plaudit wrote the grant) lies within the last
--     24 hours, 7 days or month up to now;
--   achieved_since: the grants achieved at or after p_since (NULL without p_since);
--   median_from_first: the median, over the users holding this level and the badge's first
--     level in the same scope, of the time from the first level's achieved_at to this one's
--     (NULL for the first level, and for a level nobody holds together with the first).
--
-- Separate statements, each simple enough for one good plan (as one query, the planner
-- misjudged its parts and sorted millions of grants where it could hash them): the counts,
-- one pass over the grants; the players, one over the progress rows and a merge of both
-- tables' keys; the medians, one sort of the grants by user. Scoped rows, rare, are counted
-- apart, only for the badges that have them.
CREATE OR REPLACE FUNCTION {{ schema }}.badge_stats(
    p_since timestamptz DEFAULT NULL,
    p_badges text[] DEFAULT NULL
) RETURNS TABLE (badge text, level text, holders bigint, grants bigint, players bigint,
                 rarity numeric, achieved_day bigint, achieved_week bigint,
                 achieved_month bigint, awarded_day bigint, awarded_week bigint,
                 awarded_month bigint, achieved_since bigint, median_from_first interval)
LANGUAGE plpgsql STABLE SECURITY DEFINER
-- Settings for these statements only (the caller's are back when the function returns):
-- jit off, compiling them took longer than running them; work_mem 64MB, hashing and sorting
-- millions of grants in the default 4MB spills to disk; enable_nestloop, switched off
-- below, restored.
SET search_path = pg_catalog, pg_temp SET jit = off SET work_mem = '64MB'
SET enable_nestloop = on
AS $function$
DECLARE
    v_now timestamptz := now();
    v_day timestamptz := now() - interval '1 day';
    v_week timestamptz := now() - interval '1 week';
    v_month timestamptz := now() - interval '1 month';
    v_counts jsonb;
    v_scoped jsonb := '[]';
    v_players jsonb;
    v_medians jsonb;
BEGIN
    -- The counts: one pass, grouped by level, by scope '' or not, and by which windows a
    -- grant falls in (a comparison or two per grant, instead of one filter per window).
    SELECT coalesce(jsonb_agg(c), '[]') INTO v_counts
    FROM (
        SELECT g.badge, g.level, sum(g.n)::bigint AS grants,
               -- a user holds a level once in scope '': these grants are holders
               coalesce(sum(g.n) FILTER (WHERE g.unscoped), 0)::bigint AS unscoped,
               coalesce(sum(g.n) FILTER (WHERE g.achieved >= 3), 0)::bigint AS achieved_day,
               coalesce(sum(g.n) FILTER (WHERE g.achieved >= 2), 0)::bigint AS achieved_week,
               coalesce(sum(g.n) FILTER (WHERE g.achieved >= 1), 0)::bigint AS achieved_month,
               coalesce(sum(g.n) FILTER (WHERE g.awarded >= 3), 0)::bigint AS awarded_day,
               coalesce(sum(g.n) FILTER (WHERE g.awarded >= 2), 0)::bigint AS awarded_week,
               coalesce(sum(g.n) FILTER (WHERE g.awarded >= 1), 0)::bigint AS awarded_month,
               coalesce(sum(g.n) FILTER (WHERE g.since), 0)::bigint AS achieved_since
        FROM (
            SELECT ub.badge, ub.level, ub.scope = '' AS unscoped,
                   -- 0: before the last month (or in the future), 1: within the last month,
                   -- 2: the last 7 days, 3: the last 24 hours
                   CASE WHEN ub.achieved_at <= v_month OR ub.achieved_at > v_now THEN 0
                        WHEN ub.achieved_at <= v_week THEN 1
                        WHEN ub.achieved_at <= v_day THEN 2 ELSE 3 END AS achieved,
                   CASE WHEN ub.awarded_at <= v_month OR ub.awarded_at > v_now THEN 0
                        WHEN ub.awarded_at <= v_week THEN 1
                        WHEN ub.awarded_at <= v_day THEN 2 ELSE 3 END AS awarded,
                   ub.achieved_at >= p_since AS since,
                   count(*) AS n
            FROM {{ schema }}.user_badge AS ub
            WHERE p_badges IS NULL OR ub.badge = ANY (p_badges)
            GROUP BY 1, 2, 3, 4, 5, 6
        ) AS g
        GROUP BY g.badge, g.level
    ) AS c;

    -- The holders among scoped grants: each user once, unless already held in scope ''.
    IF jsonb_path_exists(v_counts, '$[*] ? (@.grants > @.unscoped)') THEN
        SELECT coalesce(jsonb_agg(s), '[]') INTO v_scoped
        FROM (
            SELECT ub.badge, ub.level, count(DISTINCT ub.user_id) AS holders
            FROM {{ schema }}.user_badge AS ub
            WHERE ub.badge = ANY (ARRAY(
                      SELECT c.badge FROM jsonb_to_recordset(v_counts)
                          AS c (badge text, grants bigint, unscoped bigint)
                      WHERE c.grants > c.unscoped))
              AND ub.scope <> ''
              AND NOT EXISTS (SELECT FROM {{ schema }}.user_badge AS o
                              WHERE o.user_id = ub.user_id AND o.badge = ub.badge
                                AND o.level = ub.level AND o.scope = '')
            GROUP BY ub.badge, ub.level
        ) AS s;
    END IF;

    -- The players: the users with progress rows, and those holding grants but no progress
    -- row (manual grants, rules keeping none). Progress in scope '' is one row per user;
    -- users with progress in other scopes only are counted apart, for the badges that have
    -- such rows.
    SELECT coalesce(jsonb_agg(p), '[]') INTO v_players
    FROM (
        SELECT pr.badge, count(*) FILTER (WHERE pr.scope = '') AS users, count(*) AS rows
        FROM {{ schema }}.user_progress AS pr
        WHERE p_badges IS NULL OR pr.badge = ANY (p_badges)
        GROUP BY pr.badge
    ) AS p;
    IF jsonb_path_exists(v_players, '$[*] ? (@.rows > @.users)') THEN
        SELECT v_players || coalesce(jsonb_agg(s), '[]') INTO v_players
        FROM (
            SELECT pr.badge, count(DISTINCT pr.user_id) AS users
            FROM {{ schema }}.user_progress AS pr
            WHERE pr.badge = ANY (ARRAY(
                      SELECT c.badge FROM jsonb_to_recordset(v_players)
                          AS c (badge text, rows bigint, users bigint)
                      WHERE c.rows > c.users))
              AND pr.scope <> ''
              AND NOT EXISTS (SELECT FROM {{ schema }}.user_progress AS o
                              WHERE o.user_id = pr.user_id AND o.badge = pr.badge
                                AND o.scope = '')
            GROUP BY pr.badge
        ) AS s;
    END IF;
    -- a merge of both tables' keys, in their primary keys' order (user_id, badge, ...)
    SELECT v_players || coalesce(jsonb_agg(g), '[]') INTO v_players
    FROM (
        SELECT ub.badge, count(DISTINCT ub.user_id) AS users
        FROM {{ schema }}.user_badge AS ub
        WHERE (p_badges IS NULL OR ub.badge = ANY (p_badges))
          AND NOT EXISTS (SELECT FROM {{ schema }}.user_progress AS pr
                          WHERE pr.user_id = ub.user_id AND pr.badge = ub.badge)
        GROUP BY ub.badge
    ) AS g;

    -- The medians: the grants of badges with more than one level, sorted by user (numbers
    -- sort much faster than text: the user id leads), each next to the achieved_at of its
    -- user's first level in the same scope. Hash joins only: joined to badge_level through
    -- nested loops, the planner read every grant through the (badge, level) index.
    PERFORM set_config('enable_nestloop', 'off', true);
    SELECT coalesce(jsonb_agg(m), '[]') INTO v_medians
    FROM (
        SELECT w.badge, w.level,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY w.achieved_at - w.first_at)
                   AS median
        FROM (
            SELECT ub.badge, ub.level, bl.position, ub.achieved_at,
                   min(ub.achieved_at) FILTER (WHERE bl.position = 1)
                       OVER (PARTITION BY ub.user_id, ub.badge, ub.scope) AS first_at
            FROM {{ schema }}.user_badge AS ub
            JOIN (SELECT l.badge, l.key, l.position,
                         count(*) OVER (PARTITION BY l.badge) AS levels
                  FROM {{ schema }}.badge_level AS l) AS bl
              ON bl.badge = ub.badge AND bl.key = ub.level AND bl.levels > 1
            WHERE (p_badges IS NULL OR ub.badge = ANY (p_badges))
              -- an infinite achieved_at has no distance to another
              AND isfinite(ub.achieved_at)
        ) AS w
        WHERE w.position > 1 AND w.first_at IS NOT NULL
        GROUP BY w.badge, w.level
    ) AS m;

    RETURN QUERY
    SELECT l.badge, l.key, coalesce(c.unscoped, 0) + coalesce(s.holders, 0),
           coalesce(c.grants, 0), coalesce(pl.players, 0),
           round(100.0 * (coalesce(c.unscoped, 0) + coalesce(s.holders, 0))
                 / nullif(pl.players, 0), 2),
           coalesce(c.achieved_day, 0), coalesce(c.achieved_week, 0),
           coalesce(c.achieved_month, 0), coalesce(c.awarded_day, 0),
           coalesce(c.awarded_week, 0), coalesce(c.awarded_month, 0),
           CASE WHEN p_since IS NOT NULL THEN coalesce(c.achieved_since, 0) END,
           m.median
    FROM {{ schema }}.badge_level AS l
    LEFT JOIN jsonb_to_recordset(v_counts) AS c (
        badge text, level text, grants bigint, unscoped bigint, achieved_day bigint,
        achieved_week bigint, achieved_month bigint, awarded_day bigint, awarded_week bigint,
        awarded_month bigint, achieved_since bigint) ON c.badge = l.badge AND c.level = l.key
    LEFT JOIN jsonb_to_recordset(v_scoped) AS s (badge text, level text, holders bigint)
      ON s.badge = l.badge AND s.level = l.key
    LEFT JOIN (SELECT pr.badge, sum(pr.users)::bigint AS players
               FROM jsonb_to_recordset(v_players) AS pr (badge text, users bigint)
               GROUP BY pr.badge) AS pl ON pl.badge = l.badge
    LEFT JOIN jsonb_to_recordset(v_medians) AS m (badge text, level text, median interval)
      ON m.badge = l.badge AND m.level = l.key
    WHERE p_badges IS NULL OR l.badge = ANY (p_badges)
    ORDER BY l.badge, l.position;
END;
$function$;

-- Grants per ISO week (weeks start on Monday 00:00 in p_timezone), for a chart: one row per
-- week from the week containing p_since (else the week of the first grant) to the current
-- week, weeks without grants included (0). A week counts the grants achieved in it, of every
-- badge or of p_badges; a grant achieved in the future or at an infinite time is in none.
CREATE OR REPLACE FUNCTION {{ schema }}.grants_per_week(
    p_since timestamptz DEFAULT NULL,
    p_timezone text DEFAULT current_setting('TimeZone'),
    p_badges text[] DEFAULT NULL
) RETURNS TABLE (week date, grants bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET jit = off
AS $function$
DECLARE
    v_first timestamp := date_trunc('week', p_since AT TIME ZONE p_timezone);
    v_starts timestamptz[];
    v_counts bigint[];
BEGIN
    IF v_first IS NULL THEN
        SELECT date_trunc('week', min(ub.achieved_at) AT TIME ZONE p_timezone) INTO v_first
        FROM {{ schema }}.user_badge AS ub
        WHERE isfinite(ub.achieved_at) AND (p_badges IS NULL OR ub.badge = ANY (p_badges));
    END IF;
    -- when each week starts, as instants: a grant's week is a binary search among them, not
    -- a time zone conversion per grant (three times slower, measured at 5M grants)
    v_starts := ARRAY(
        SELECT s.week AT TIME ZONE p_timezone
        FROM generate_series(v_first, date_trunc('week', now() AT TIME ZONE p_timezone),
                             interval '1 week') AS s (week)
        ORDER BY 1);
    IF cardinality(v_starts) = 0 THEN  -- no grant yet, or a p_since after now
        RETURN;
    END IF;
    SELECT array_agg(coalesce(c.grants, 0) ORDER BY i.i) INTO v_counts
    FROM generate_subscripts(v_starts, 1) AS i (i)
    LEFT JOIN (
        SELECT width_bucket(ub.achieved_at, v_starts) AS i, count(*) AS grants
        FROM {{ schema }}.user_badge AS ub
        WHERE ub.achieved_at >= v_starts[1] AND ub.achieved_at <= now()
          AND (p_badges IS NULL OR ub.badge = ANY (p_badges))
        GROUP BY 1
    ) AS c ON c.i = i.i;
    RETURN QUERY
    SELECT (w.start AT TIME ZONE p_timezone)::date, w.grants
    FROM unnest(v_starts, v_counts) AS w (start, grants)
    ORDER BY 1;
END;
$function$;

-- The rules gone quiet over the last p_days days: enabled, with triggers, their trigger events
-- kept coming all along, and yet they granted nothing. An incremental run is what a batch of
-- the rule's trigger events causes (`plaudit run`, the events job, check()), so the run log
-- tells: the rule had an incremental run within the window's first day and one within its last
-- day, and no run of it (of any mode) that started within the window granted anything. Run
-- rows are kept for `retention.runs` (30 days): a longer window finds nothing.
--   runs: its incremental runs in the window; first_run_at, last_run_at: the first and last
--   of them; last_granted_at: when the latest run that granted something started (NULL when
--   none is left in the run log).
CREATE OR REPLACE FUNCTION {{ schema }}.quiet_rules(p_days int DEFAULT 7)
RETURNS TABLE (badge text, runs bigint, first_run_at timestamptz, last_run_at timestamptz,
               last_granted_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT b.slug, w.runs, w.first_run_at, w.last_run_at,
           (SELECT max(g.started_at) FROM {{ schema }}.run AS g
            WHERE g.badge = b.slug AND g.granted > 0)
    FROM {{ schema }}.badge AS b
    CROSS JOIN LATERAL (
        SELECT count(*) AS runs, min(r.started_at) AS first_run_at,
               max(r.started_at) AS last_run_at
        FROM {{ schema }}.run AS r
        WHERE r.badge = b.slug AND r.mode = 'incremental'
          AND r.started_at >= now() - p_days * interval '1 day'
    ) AS w
    WHERE b.enabled AND b.triggers <> '{}'
      AND w.first_run_at < now() - (p_days - 1) * interval '1 day'
      AND w.last_run_at >= now() - interval '1 day'
      AND NOT EXISTS (SELECT FROM {{ schema }}.run AS g
                      WHERE g.badge = b.slug AND g.granted > 0
                        AND g.started_at >= now() - p_days * interval '1 day')
    ORDER BY b.slug;
$function$;

-- The functions with their defaults, as views: for a dashboard's SELECT. grants_per_week
-- counts in the session's time zone (SET TimeZone).
CREATE OR REPLACE VIEW {{ schema }}.badge_stats AS
SELECT * FROM {{ schema }}.badge_stats();

CREATE OR REPLACE VIEW {{ schema }}.grants_per_week AS
SELECT * FROM {{ schema }}.grants_per_week();

CREATE OR REPLACE VIEW {{ schema }}.quiet_rules AS
SELECT * FROM {{ schema }}.quiet_rules();

-- as every plaudit function (008_boundary.sql): granted to the roles that need it, not PUBLIC
REVOKE EXECUTE ON FUNCTION {{ schema }}.badge_stats(timestamptz, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.grants_per_week(timestamptz, text, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.quiet_rules(int) FROM PUBLIC;
