-- Leaderboards (issue 14, first part): who leads, by points, by number of grants, or by the
-- highest level of one badge, over all time or the period containing a moment. Rendered with
-- {{ schema }} like the other schema files; re-created by every init.

-- The ranked users, highest value first, standard competition ranking (1, 2, 2, 4): equal
-- values share a rank. Rows with equal values are listed by who reached that value first
-- (the latest achieved_at among the grants counted), then by user id. Users with nothing in
-- the period are not listed.
--   p_by: 'points' (the points of the user's grants), 'badges' (how many grants), or a badge
--         slug (the highest level of it the user holds, in level order: value 1 is the first)
--   p_period: 'all', or 'day', 'week' (ISO), 'month', 'year': the one containing p_at, in
--             p_timezone; only grants achieved within it count
CREATE OR REPLACE FUNCTION {{ schema }}.leaderboard(
    p_by text DEFAULT 'points',
    p_period text DEFAULT 'all',
    p_at timestamptz DEFAULT now(),
    p_timezone text DEFAULT 'UTC',
    p_limit int DEFAULT 10,
    p_offset int DEFAULT 0
) RETURNS TABLE (rank bigint, user_id {{ user_id_type }}, value numeric, reached_at timestamptz)
LANGUAGE plpgsql STABLE AS $function$
DECLARE
    v_start timestamptz := '-infinity';
    v_end timestamptz := 'infinity';
BEGIN
    IF p_period NOT IN ('all', 'day', 'week', 'month', 'year') THEN
        RAISE EXCEPTION 'unknown period %: all, day, week, month or year', p_period
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_by NOT IN ('points', 'badges')
       AND NOT EXISTS (SELECT FROM {{ schema }}.badge AS b WHERE b.slug = p_by) THEN
        RAISE EXCEPTION 'cannot rank by %: points, badges or a deployed badge''s slug', p_by
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_period <> 'all' THEN
        v_start := date_trunc(p_period, p_at AT TIME ZONE p_timezone) AT TIME ZONE p_timezone;
        v_end := (date_trunc(p_period, p_at AT TIME ZONE p_timezone)
                  + ('1 ' || p_period)::interval) AT TIME ZONE p_timezone;
    END IF;
    RETURN QUERY
    WITH counted AS (
        SELECT ub.user_id, l.points, l.position, ub.achieved_at, ub.badge
        FROM {{ schema }}.user_badge AS ub
        JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
        WHERE ub.achieved_at >= v_start AND ub.achieved_at < v_end
          AND (p_by IN ('points', 'badges') OR ub.badge = p_by)
    ),
    valued AS (
        SELECT c.user_id,
               CASE p_by WHEN 'points' THEN sum(c.points)::numeric
                         WHEN 'badges' THEN count(*)::numeric
                         ELSE max(c.position)::numeric END AS value,
               CASE WHEN p_by IN ('points', 'badges') THEN max(c.achieved_at)
                    -- a badge: when the user reached the highest level held
                    ELSE min(c.achieved_at) FILTER (WHERE c.position = (
                        SELECT max(o.position) FROM counted AS o
                        WHERE o.user_id = c.user_id)) END AS reached_at
        FROM counted AS c
        GROUP BY c.user_id
    )
    SELECT rank() OVER (ORDER BY v.value DESC), v.user_id, v.value, v.reached_at
    FROM valued AS v
    ORDER BY v.value DESC, v.reached_at, v.user_id
    LIMIT p_limit OFFSET p_offset;
END;
$function$;

-- as every plaudit function (008_boundary.sql): granted to the roles that need it, not PUBLIC
REVOKE EXECUTE ON FUNCTION {{ schema }}.leaderboard(text, text, timestamptz, text, int, int)
    FROM PUBLIC;

-- A user's place on the same board as plaudit.leaderboard with these options: their rank and
-- value, how many users are ranked, and their neighbours above and below ("#1,234 of
-- 98,000"). No row when the user is not ranked (nothing in the period).
CREATE OR REPLACE FUNCTION {{ schema }}.rank_of(
    p_user_id {{ user_id_type }},
    p_by text DEFAULT 'points',
    p_period text DEFAULT 'all',
    p_at timestamptz DEFAULT now(),
    p_timezone text DEFAULT 'UTC'
) RETURNS TABLE (rank bigint, value numeric, ranked bigint, above {{ user_id_type }},
                 above_value numeric, below {{ user_id_type }}, below_value numeric)
LANGUAGE sql STABLE AS $function$
    WITH board AS MATERIALIZED (
        SELECT row_number() OVER (ORDER BY l.value DESC, l.reached_at, l.user_id) AS n, l.*
        FROM {{ schema }}.leaderboard(p_by, p_period, p_at, p_timezone, NULL, 0) AS l
    )
    SELECT me.rank, me.value, (SELECT count(*) FROM board), a.user_id, a.value, b.user_id,
           b.value
    FROM board AS me
    LEFT JOIN board AS a ON a.n = me.n - 1
    LEFT JOIN board AS b ON b.n = me.n + 1
    WHERE me.user_id = p_user_id;
$function$;

REVOKE EXECUTE ON FUNCTION {{ schema }}.rank_of({{ user_id_type }}, text, text, timestamptz, text)
    FROM PUBLIC;
