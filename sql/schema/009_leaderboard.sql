-- Leaderboards (issue 14): who leads, by points, by number of grants, or by the highest level
-- of one badge, over all time or the period containing a moment, among everyone or in a
-- group. Rendered with {{ schema }} like the other schema files; re-created by every init.
--
-- Fast at a million users: points and grant counts per user, over all time and per month and
-- year, are kept in plaudit.score in the same transaction as the grants (the triggers below),
-- with how many users hold each value (score_count), so a top 10 reads ten index entries and
-- a rank sums a few hundred counts. Everything else (day and week boards, a badge's board,
-- another timezone than the one the scores are cut in) is computed from user_badge.

-- The users' scores, recomputed from their grants: the one way score rows are written after
-- the first build (at commit: score_at_commit). Serialized per user (an advisory lock each; one table lock for more than
-- a thousand users, e.g. a backfill), so that each recomputation starts after the grants of
-- any other transaction that recomputes the same user have committed. score_count takes the
-- difference: the old values leave, the new ones come, and the rows of the values touched
-- that no other transaction holds are folded into one (SKIP LOCKED: nobody waits there).
CREATE OR REPLACE FUNCTION {{ schema }}.score_refresh(p_users {{ user_id_type }}[])
RETURNS void
LANGUAGE plpgsql AS $function$
DECLARE
    v_tz text;
BEGIN
    IF coalesce(cardinality(p_users), 0) = 0 THEN
        RETURN;
    END IF;
    -- Locks first, then the timezone and the grants: each statement below then sees what a
    -- rebuild (sync_scores) or a change of points (score_points_changed), which hold the
    -- table in SHARE ROW EXCLUSIVE mode until they commit, did.
    IF cardinality(p_users) > 1000 THEN
        LOCK TABLE {{ schema }}.score IN SHARE ROW EXCLUSIVE MODE;
    ELSE
        LOCK TABLE {{ schema }}.score IN ROW EXCLUSIVE MODE;
        -- in the order of the lock keys: two users whose hashes collide never cross
        PERFORM pg_advisory_xact_lock(hashtext('{{ schema }}.score'), t.k)
        FROM (SELECT DISTINCT hashtext(u::text) AS k FROM unnest(p_users) AS u) AS t
        ORDER BY t.k;
    END IF;
    v_tz := (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'score_timezone');
    IF v_tz IS NULL THEN
        RETURN;  -- no scores yet: the first deploy builds them (sync_scores)
    END IF;

    -- Only the score rows whose values changed are written: a new grant changes its user's
    -- all-time row and the rows of its month and year, not the user's other periods
    -- (measured at 1M users: rewriting every row of 152 users, 2.7k rows in 3 indexes, took
    -- 960 ms of a batch of 1,000 events; BENCHMARKS.md, issue 16).
    WITH users AS (
        SELECT DISTINCT u AS user_id FROM unnest(p_users) AS u
    ),
    fresh AS (
        SELECT ub.user_id, p.period, p.period_start, sum(l.points) AS points,
               count(*)::int AS badges, max(ub.achieved_at) AS reached_at
        FROM users AS t
        JOIN {{ schema }}.user_badge AS ub ON ub.user_id = t.user_id
        JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
        CROSS JOIN LATERAL {{ schema }}.score_periods(ub.achieved_at, v_tz) AS p
        GROUP BY 1, 2, 3
    ),
    old AS (
        SELECT s.user_id, s.period, s.period_start, s.points, s.badges, s.reached_at
        FROM users AS t
        JOIN {{ schema }}.score AS s ON s.user_id = t.user_id
    ),
    diff AS MATERIALIZED (
        SELECT coalesce(f.user_id, o.user_id) AS user_id, coalesce(f.period, o.period) AS period,
               coalesce(f.period_start, o.period_start) AS period_start,
               o.user_id IS NOT NULL AS had, o.points AS old_points, o.badges AS old_badges,
               f.user_id IS NOT NULL AS has, f.points, f.badges, f.reached_at
        FROM fresh AS f
        FULL JOIN old AS o
            ON o.user_id = f.user_id AND o.period = f.period AND o.period_start = f.period_start
        WHERE (f.points, f.badges, f.reached_at) IS DISTINCT FROM (o.points, o.badges, o.reached_at)
    ),
    removed AS (
        DELETE FROM {{ schema }}.score AS s
        USING diff AS d
        WHERE d.had AND NOT d.has AND s.user_id = d.user_id AND s.period = d.period
          AND s.period_start = d.period_start
    ),
    updated AS (
        UPDATE {{ schema }}.score AS s
        SET points = d.points, badges = d.badges, reached_at = d.reached_at
        FROM diff AS d
        WHERE d.had AND d.has AND s.user_id = d.user_id AND s.period = d.period
          AND s.period_start = d.period_start
    ),
    added AS (
        INSERT INTO {{ schema }}.score
            (user_id, period, period_start, points, badges, reached_at)
        SELECT d.user_id, d.period, d.period_start, d.points, d.badges, d.reached_at
        FROM diff AS d
        WHERE d.has AND NOT d.had
    ),
    -- score_count: the old values leave (-1), the new ones come (+1)
    delta AS (
        SELECT c.period, c.period_start, c.measure, c.value, sum(c.n) AS n
        FROM (SELECT d.period, d.period_start, m.measure, m.value, m.n
              FROM diff AS d
              CROSS JOIN LATERAL (VALUES ('points', d.old_points, -1), ('badges', d.old_badges, -1),
                                         ('points', d.points, 1), ('badges', d.badges, 1))
                  AS m (measure, value, n)
              WHERE (m.n = 1 AND d.has) OR (m.n = -1 AND d.had)
             ) AS c
        GROUP BY 1, 2, 3, 4
        HAVING sum(c.n) <> 0
    ),
    folded AS (
        DELETE FROM {{ schema }}.score_count AS c
        WHERE c.ctid = ANY (ARRAY(
            SELECT k.ctid FROM {{ schema }}.score_count AS k
            JOIN delta AS d ON (d.period, d.period_start, d.measure, d.value)
                               = (k.period, k.period_start, k.measure, k.value)
            FOR UPDATE OF k SKIP LOCKED))
        RETURNING c.period, c.period_start, c.measure, c.value, c.users
    )
    INSERT INTO {{ schema }}.score_count (period, period_start, measure, value, users)
    SELECT a.period, a.period_start, a.measure, a.value, sum(a.n)
    FROM (SELECT * FROM delta
          UNION ALL
          SELECT * FROM folded) AS a
    GROUP BY 1, 2, 3, 4
    HAVING sum(a.n) <> 0;
END;
$function$;

-- The score periods a grant counts in: all time, its month and its year in p_timezone.
CREATE OR REPLACE FUNCTION {{ schema }}.score_periods(p_at timestamptz, p_timezone text)
RETURNS TABLE (period text, period_start timestamptz)
LANGUAGE sql IMMUTABLE AS $function$
    VALUES ('all', timestamptz '-infinity'),
           ('month', date_trunc('month', p_at AT TIME ZONE p_timezone) AT TIME ZONE p_timezone),
           ('year', date_trunc('year', p_at AT TIME ZONE p_timezone) AT TIME ZONE p_timezone);
$function$;

-- Build every score from user_badge in p_timezone, unless they are built in it already: at
-- the first deploy (and after the upgrade that brought them), and when plaudit.yaml's
-- timezone changes (months and years start elsewhere). Called by configure().
CREATE OR REPLACE FUNCTION {{ schema }}.sync_scores(p_timezone text) RETURNS boolean
LANGUAGE plpgsql AS $function$
BEGIN
    IF (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'score_timezone')
       IS NOT DISTINCT FROM p_timezone THEN
        RETURN false;
    END IF;
    LOCK TABLE {{ schema }}.score IN SHARE ROW EXCLUSIVE MODE;
    TRUNCATE {{ schema }}.score, {{ schema }}.score_count, {{ schema }}.score_stale;
    INSERT INTO {{ schema }}.meta AS m (key, value) VALUES ('score_timezone', p_timezone)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    INSERT INTO {{ schema }}.score (user_id, period, period_start, points, badges, reached_at)
    SELECT ub.user_id, p.period, p.period_start, sum(l.points), count(*), max(ub.achieved_at)
    FROM {{ schema }}.user_badge AS ub
    JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
    CROSS JOIN LATERAL {{ schema }}.score_periods(ub.achieved_at, p_timezone) AS p
    GROUP BY 1, 2, 3;
    INSERT INTO {{ schema }}.score_count (period, period_start, measure, value, users)
    SELECT s.period, s.period_start, m.measure, m.value, count(*)
    FROM {{ schema }}.score AS s
    CROSS JOIN LATERAL (VALUES ('points', s.points), ('badges', s.badges::bigint))
        AS m (measure, value)
    GROUP BY 1, 2, 3, 4;
    RETURN true;
END;
$function$;

-- The triggers: every statement that adds, removes or re-dates grants notes the users it
-- touched, and the transaction recomputes their scores when it commits, all at once
-- (score_at_commit): each transaction takes its score locks in one sorted sweep at its very
-- end and holds them only while it commits, so transactions granting to the same users never
-- deadlock on them, whatever the order of their statements. A change of a level's points
-- notes its holders.
CREATE OR REPLACE FUNCTION {{ schema }}.score_note(p_users {{ user_id_type }}[])
RETURNS void
LANGUAGE plpgsql AS $function$
BEGIN
    IF coalesce(cardinality(p_users), 0) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO {{ schema }}.score_pending (txid, user_id)
    SELECT txid_current(), u FROM unnest(p_users) AS u;
    INSERT INTO {{ schema }}.score_pending_tx (txid) VALUES (txid_current())
    ON CONFLICT (txid) DO NOTHING;
END;
$function$;

-- SECURITY DEFINER: a deferred trigger runs as the role that commits (before PostgreSQL 18),
-- say an app role that may only EXECUTE plaudit.check, not read score_pending.
-- A transaction of a backfill of several rules (plaudit.defer_scores) leaves its users to
-- plaudit.score_catch_up instead, which recomputes each once at the backfill's end.
CREATE OR REPLACE FUNCTION {{ schema }}.score_at_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
BEGIN
    IF current_setting('plaudit.defer_scores', true) = '{{ schema }}' THEN
        INSERT INTO {{ schema }}.score_stale AS st (user_id)
        SELECT DISTINCT p.user_id FROM {{ schema }}.score_pending AS p
        WHERE p.txid = new.txid
        ORDER BY 1
        -- DO UPDATE, not NOTHING: the row stays locked until this transaction commits, so a
        -- catch-up cannot take the user (SKIP LOCKED) and recompute them without its grants
        ON CONFLICT (user_id) DO UPDATE SET since = st.since;
    ELSE
        PERFORM {{ schema }}.score_refresh(ARRAY(
            SELECT DISTINCT p.user_id FROM {{ schema }}.score_pending AS p
            WHERE p.txid = new.txid));
    END IF;
    DELETE FROM {{ schema }}.score_pending AS p WHERE p.txid = new.txid;
    DELETE FROM {{ schema }}.score_pending_tx AS t WHERE t.txid = new.txid;
    RETURN NULL;
END;
$function$;

-- The rest of this transaction leaves its scores to plaudit.score_catch_up (a backfill of
-- several rules: the runner catches up once all ran). Transaction-local, like the batch.
CREATE OR REPLACE FUNCTION {{ schema }}.defer_scores() RETURNS void
LANGUAGE sql AS $function$
    SELECT set_config('plaudit.defer_scores', '{{ schema }}', true);
$function$;

-- Recompute the scores of up to p_limit users a deferred transaction left (score_stale), in
-- key order; how many. The caller commits and calls again until it returns 0: each call is
-- one bounded transaction, so leaderboards are never locked for long (20,000 users: a few
-- statements for a million, each holding the table lock score_refresh takes for more than
-- a thousand users for a second or two).
DROP FUNCTION IF EXISTS {{ schema }}.score_catch_up(int);
CREATE OR REPLACE FUNCTION {{ schema }}.score_catch_up(p_limit int DEFAULT 20000) RETURNS int
LANGUAGE plpgsql AS $function$
DECLARE
    v_users {{ user_id_type }}[];
BEGIN
    WITH taken AS (
        DELETE FROM {{ schema }}.score_stale AS s
        WHERE s.user_id IN (SELECT t.user_id FROM {{ schema }}.score_stale AS t
                            ORDER BY t.user_id LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING s.user_id
    )
    SELECT array_agg(t.user_id ORDER BY t.user_id) INTO v_users FROM taken AS t;
    PERFORM {{ schema }}.score_refresh(v_users);
    RETURN coalesce(cardinality(v_users), 0);
END;
$function$;

-- grants added or removed: both triggers name their transition table touched_grants
CREATE OR REPLACE FUNCTION {{ schema }}.score_grants_touched() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    PERFORM {{ schema }}.score_note(ARRAY(SELECT DISTINCT t.user_id FROM touched_grants AS t));
    RETURN NULL;
END;
$function$;

CREATE OR REPLACE FUNCTION {{ schema }}.score_grants_changed() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    -- marking grants seen changes nothing counted: only users whose grants moved or changed
    PERFORM {{ schema }}.score_note(ARRAY(
        SELECT c.user_id FROM (
            (SELECT n.user_id, n.badge, n.level, n.scope, n.achieved_at FROM new_grants AS n
             EXCEPT ALL
             SELECT o.user_id, o.badge, o.level, o.scope, o.achieved_at FROM old_grants AS o)
            UNION
            (SELECT o.user_id, o.badge, o.level, o.scope, o.achieved_at FROM old_grants AS o
             EXCEPT ALL
             SELECT n.user_id, n.badge, n.level, n.scope, n.achieved_at FROM new_grants AS n)
        ) AS c GROUP BY c.user_id));
    RETURN NULL;
END;
$function$;

CREATE OR REPLACE FUNCTION {{ schema }}.score_grants_truncated() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    TRUNCATE {{ schema }}.score, {{ schema }}.score_count, {{ schema }}.score_stale;
    RETURN NULL;
END;
$function$;

CREATE OR REPLACE FUNCTION {{ schema }}.score_points_changed() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    -- a grant committing meanwhile would count the old points for a user not noted here:
    -- its score_refresh waits for this transaction instead
    LOCK TABLE {{ schema }}.score IN SHARE ROW EXCLUSIVE MODE;
    PERFORM {{ schema }}.score_note(ARRAY(
        SELECT ub.user_id FROM {{ schema }}.user_badge AS ub
        WHERE ub.badge = new.badge AND ub.level = new.key));
    RETURN NULL;
END;
$function$;

-- a constraint trigger has no OR REPLACE: re-created (it holds no data)
DROP TRIGGER IF EXISTS score_at_commit ON {{ schema }}.score_pending_tx;
CREATE CONSTRAINT TRIGGER score_at_commit AFTER INSERT ON {{ schema }}.score_pending_tx
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION {{ schema }}.score_at_commit();
{% if not citus -%}
-- (On Citus, user_badge is a distributed table and badge_level a reference table, on which
-- Citus runs no statement triggers with transition tables and no trigger at all unless
-- citus.enable_unsafe_triggers: scores are not kept there, docs/citus.md.)
CREATE OR REPLACE TRIGGER score_grants_added AFTER INSERT ON {{ schema }}.user_badge
    REFERENCING NEW TABLE AS touched_grants
    FOR EACH STATEMENT EXECUTE FUNCTION {{ schema }}.score_grants_touched();
CREATE OR REPLACE TRIGGER score_grants_removed AFTER DELETE ON {{ schema }}.user_badge
    REFERENCING OLD TABLE AS touched_grants
    FOR EACH STATEMENT EXECUTE FUNCTION {{ schema }}.score_grants_touched();
CREATE OR REPLACE TRIGGER score_grants_changed AFTER UPDATE ON {{ schema }}.user_badge
    REFERENCING OLD TABLE AS old_grants NEW TABLE AS new_grants
    FOR EACH STATEMENT EXECUTE FUNCTION {{ schema }}.score_grants_changed();
CREATE OR REPLACE TRIGGER score_grants_truncated AFTER TRUNCATE ON {{ schema }}.user_badge
    FOR EACH STATEMENT EXECUTE FUNCTION {{ schema }}.score_grants_truncated();
CREATE OR REPLACE TRIGGER score_points_changed AFTER UPDATE OF points ON {{ schema }}.badge_level
    FOR EACH ROW WHEN (old.points IS DISTINCT FROM new.points)
    EXECUTE FUNCTION {{ schema }}.score_points_changed();
{% endif -%}

-- The members of one group (plaudit.yaml `groups:`, synced by deploy into leaderboard_group):
-- the group's SELECT runs under the rule boundary (query_rows, 008_boundary.sql), as analysts
-- write it like a rule. The key is read as the type of group_id (an untyped literal), so an
-- index on the group column serves it.
CREATE OR REPLACE FUNCTION {{ schema }}.group_members(p_group text, p_key text)
RETURNS TABLE (user_id {{ user_id_type }})
LANGUAGE plpgsql AS $function$
DECLARE
    v_query text := (SELECT g.query FROM {{ schema }}.leaderboard_group AS g
                     WHERE g.name = p_group);
BEGIN
    IF v_query IS NULL THEN
        RAISE EXCEPTION 'unknown group %: plaudit.yaml''s groups: names the groups (then deploy)',
            p_group USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN  -- rolled back on purpose, keeping the rows: the search_path goes with it
        -- unqualified names resolve where the rules' do, whoever asks (configure sets it)
        PERFORM set_config('search_path', m.value, true)
        FROM {{ schema }}.meta AS m WHERE m.key = 'rule_search_path';
        RETURN QUERY
        SELECT DISTINCT m.user_id
        FROM {{ schema }}.query_rows(format(
            'SELECT g.user_id::{{ user_id_type }} FROM (%s) AS g WHERE g.group_id = %L',
            v_query, p_key)) AS m (user_id {{ user_id_type }})
        WHERE m.user_id IS NOT NULL;
        RAISE EXCEPTION USING ERRCODE = 'P0P01';
    EXCEPTION WHEN SQLSTATE 'P0P01' THEN
        NULL;
    END;
END;
$function$;

-- Every user's value on a board, unranked: what the scores cannot answer. p_start/p_end bound
-- achieved_at (NULL: all time), p_members restricts to a group (NULL: everyone).
CREATE OR REPLACE FUNCTION {{ schema }}.board_values(
    p_by text, p_start timestamptz, p_end timestamptz, p_members {{ user_id_type }}[]
) RETURNS TABLE (user_id {{ user_id_type }}, value numeric, reached_at timestamptz)
LANGUAGE plpgsql STABLE AS $function$
BEGIN
    RETURN QUERY
    WITH counted AS (
        SELECT ub.user_id, l.points, l.position, ub.achieved_at
        FROM {{ schema }}.user_badge AS ub
        JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
        WHERE (p_start IS NULL OR ub.achieved_at >= p_start AND ub.achieved_at < p_end)
          AND (p_by IN ('points', 'badges') OR ub.badge = p_by)
          AND (p_members IS NULL OR ub.user_id = ANY (p_members))
    )
    SELECT c.user_id,
           CASE p_by WHEN 'points' THEN sum(c.points)::numeric
                     WHEN 'badges' THEN count(*)::numeric
                     ELSE max(c.position)::numeric END,
           CASE WHEN p_by IN ('points', 'badges') THEN max(c.achieved_at)
                -- a badge: when the user reached the highest level held
                ELSE (array_agg(c.achieved_at ORDER BY c.position DESC, c.achieved_at))[1] END
    FROM counted AS c
    GROUP BY c.user_id;
END;
$function$;

-- The board a call reads: its period's bounds, and whether plaudit.score answers it (by
-- points or badges, over all time, or a month or year cut in the scores' timezone).
CREATE OR REPLACE FUNCTION {{ schema }}.board(
    p_by text, p_period text, p_at timestamptz, p_timezone text, p_group text
) RETURNS TABLE (scored boolean, period_start timestamptz, period_end timestamptz)
LANGUAGE plpgsql STABLE AS $function$
DECLARE
    v_start timestamptz;
    v_end timestamptz;
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
    IF p_group IS NOT NULL
       AND NOT EXISTS (SELECT FROM {{ schema }}.leaderboard_group AS g WHERE g.name = p_group)
    THEN
        RAISE EXCEPTION 'unknown group %: plaudit.yaml''s groups: names the groups (then deploy)',
            p_group USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_period <> 'all' THEN
        v_start := date_trunc(p_period, p_at AT TIME ZONE p_timezone) AT TIME ZONE p_timezone;
        v_end := (date_trunc(p_period, p_at AT TIME ZONE p_timezone)
                  + ('1 ' || p_period)::interval) AT TIME ZONE p_timezone;
    END IF;
    RETURN QUERY SELECT
        p_by IN ('points', 'badges')
        AND (p_period = 'all'
             OR p_period IN ('month', 'year')
                AND p_timezone = (SELECT m.value FROM {{ schema }}.meta AS m
                                  WHERE m.key = 'score_timezone'))
        AND EXISTS (SELECT FROM {{ schema }}.meta AS m WHERE m.key = 'score_timezone'),
        v_start, v_end;
END;
$function$;

-- The ranked users, highest value first, standard competition ranking (1, 2, 2, 4): equal
-- values share a rank. Rows with equal values are listed by who reached that value first
-- (the latest achieved_at among the grants counted), then by user id. Users with nothing in
-- the period are not listed.
--   p_by: 'points' (the points of the user's grants), 'badges' (how many grants), or a badge
--         slug (the highest level of it the user holds, in level order: value 1 is the first)
--   p_period: 'all', or 'day', 'week' (ISO), 'month', 'year': the one containing p_at, in
--             p_timezone; only grants achieved within it count
--   p_group, p_group_key: only the members of that group (plaudit.yaml `groups:`), ranked
--             among themselves
CREATE OR REPLACE FUNCTION {{ schema }}.leaderboard(
    p_by text DEFAULT 'points',
    p_period text DEFAULT 'all',
    p_at timestamptz DEFAULT now(),
    p_timezone text DEFAULT 'UTC',
    p_limit int DEFAULT 10,
    p_offset int DEFAULT 0,
    p_group text DEFAULT NULL,
    p_group_key text DEFAULT NULL
) RETURNS TABLE (rank bigint, user_id {{ user_id_type }}, value numeric, reached_at timestamptz)
LANGUAGE plpgsql AS $function$
DECLARE
    v_board record := {{ schema }}.board(p_by, p_period, p_at, p_timezone, p_group);
    v_period text := CASE WHEN p_period = 'all' THEN 'all' ELSE p_period END;
    v_start timestamptz := coalesce(v_board.period_start, '-infinity');
    v_members {{ user_id_type }}[];
BEGIN
    IF p_group IS NOT NULL THEN
        v_members := ARRAY(SELECT m.user_id FROM {{ schema }}.group_members(p_group, p_group_key) AS m);
    END IF;
    IF v_board.scored AND v_members IS NULL THEN
        -- the first entries of the index; a rank is 1 + the users with a higher value
        RETURN QUERY EXECUTE format($sql$
            SELECT 1 + coalesce((SELECT sum(c.users) FROM {{ schema }}.score_count AS c
                                 WHERE c.period = $1 AND c.period_start = $2
                                   AND c.measure = %1$L AND c.value > s.%1$I), 0)::bigint,
                   s.user_id, s.%1$I::numeric, s.reached_at
            FROM {{ schema }}.score AS s
            WHERE s.period = $1 AND s.period_start = $2
            ORDER BY s.%1$I DESC, s.reached_at, s.user_id
            LIMIT $3 OFFSET $4 $sql$, p_by)
        USING v_period, v_start, p_limit, p_offset;
        RETURN;
    END IF;
    IF v_board.scored THEN
        -- a group: its members' scores, ranked among themselves
        RETURN QUERY EXECUTE format($sql$
            SELECT rank() OVER (ORDER BY s.%1$I DESC), s.user_id, s.%1$I::numeric, s.reached_at
            FROM unnest($3::{{ user_id_type }}[]) AS m (user_id)
            JOIN {{ schema }}.score AS s
              ON s.user_id = m.user_id AND s.period = $1 AND s.period_start = $2
            ORDER BY s.%1$I DESC, s.reached_at, s.user_id
            LIMIT $4 OFFSET $5 $sql$, p_by)
        USING v_period, v_start, v_members, p_limit, p_offset;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT rank() OVER (ORDER BY v.value DESC), v.user_id, v.value, v.reached_at
    FROM {{ schema }}.board_values(p_by, v_board.period_start, v_board.period_end, v_members)
        AS v
    ORDER BY v.value DESC, v.reached_at, v.user_id
    LIMIT p_limit OFFSET p_offset;
END;
$function$;

-- A user's place on the same board as plaudit.leaderboard with these options: their rank and
-- value, how many users are ranked, and their neighbours above and below ("#1,234 of
-- 98,000"). No row when the user is not ranked (nothing in the period).
CREATE OR REPLACE FUNCTION {{ schema }}.rank_of(
    p_user_id {{ user_id_type }},
    p_by text DEFAULT 'points',
    p_period text DEFAULT 'all',
    p_at timestamptz DEFAULT now(),
    p_timezone text DEFAULT 'UTC',
    p_group text DEFAULT NULL,
    p_group_key text DEFAULT NULL
) RETURNS TABLE (rank bigint, value numeric, ranked bigint, above {{ user_id_type }},
                 above_value numeric, below {{ user_id_type }}, below_value numeric)
LANGUAGE plpgsql AS $function$
DECLARE
    v_board record := {{ schema }}.board(p_by, p_period, p_at, p_timezone, p_group);
    v_period text := CASE WHEN p_period = 'all' THEN 'all' ELSE p_period END;
    v_start timestamptz := coalesce(v_board.period_start, '-infinity');
BEGIN
    IF v_board.scored AND p_group IS NULL THEN
        -- the counts above the user's value, and the index entries next to theirs
        RETURN QUERY EXECUTE format($sql$
            WITH me AS (
                SELECT s.%1$I AS value, s.reached_at, s.user_id
                FROM {{ schema }}.score AS s
                WHERE s.user_id = $3 AND s.period = $1 AND s.period_start = $2
            ),
            counts AS (
                SELECT c.value, sum(c.users) AS users FROM {{ schema }}.score_count AS c
                WHERE c.period = $1 AND c.period_start = $2 AND c.measure = %1$L
                GROUP BY c.value
            ),
            above AS (
                SELECT coalesce(
                    (SELECT s.user_id FROM {{ schema }}.score AS s, me
                     WHERE s.period = $1 AND s.period_start = $2 AND s.%1$I = me.value
                       AND (s.reached_at, s.user_id) < (me.reached_at, me.user_id)
                     ORDER BY s.reached_at DESC, s.user_id DESC LIMIT 1),
                    (SELECT s.user_id FROM {{ schema }}.score AS s, me
                     WHERE s.period = $1 AND s.period_start = $2 AND s.%1$I > me.value
                     ORDER BY s.%1$I, s.reached_at DESC, s.user_id DESC LIMIT 1)) AS user_id
            ),
            below AS (
                SELECT coalesce(
                    (SELECT s.user_id FROM {{ schema }}.score AS s, me
                     WHERE s.period = $1 AND s.period_start = $2 AND s.%1$I = me.value
                       AND (s.reached_at, s.user_id) > (me.reached_at, me.user_id)
                     ORDER BY s.reached_at, s.user_id LIMIT 1),
                    (SELECT s.user_id FROM {{ schema }}.score AS s, me
                     WHERE s.period = $1 AND s.period_start = $2 AND s.%1$I < me.value
                     ORDER BY s.%1$I DESC, s.reached_at, s.user_id LIMIT 1)) AS user_id
            )
            SELECT 1 + coalesce((SELECT sum(c.users) FROM counts AS c
                                 WHERE c.value > me.value), 0)::bigint,
                   me.value::numeric,
                   (SELECT sum(c.users) FROM counts AS c)::bigint,
                   above.user_id, a.%1$I::numeric, below.user_id, b.%1$I::numeric
            FROM me CROSS JOIN above CROSS JOIN below
            LEFT JOIN {{ schema }}.score AS a
              ON a.user_id = above.user_id AND a.period = $1 AND a.period_start = $2
            LEFT JOIN {{ schema }}.score AS b
              ON b.user_id = below.user_id AND b.period = $1 AND b.period_start = $2 $sql$,
            p_by)
        USING v_period, v_start, p_user_id;
        RETURN;
    END IF;
    RETURN QUERY
    WITH board AS MATERIALIZED (
        SELECT row_number() OVER (ORDER BY l.value DESC, l.reached_at, l.user_id) AS n, l.*
        FROM {{ schema }}.leaderboard(p_by, p_period, p_at, p_timezone, NULL, 0, p_group,
                                      p_group_key) AS l
    )
    SELECT me.rank, me.value, (SELECT count(*) FROM board), a.user_id, a.value, b.user_id,
           b.value
    FROM board AS me
    LEFT JOIN board AS a ON a.n = me.n - 1
    LEFT JOIN board AS b ON b.n = me.n + 1
    WHERE me.user_id = p_user_id;
END;
$function$;

-- as every plaudit function (008_boundary.sql): granted to the roles that need it, not PUBLIC
-- (the trigger functions and score_refresh write the scores; nobody else calls them)
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {{ schema }} FROM PUBLIC;
