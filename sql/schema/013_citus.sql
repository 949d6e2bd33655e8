-- Rules on a Citus cluster (docs/citus.md). Created only in a schema placed on Citus
-- (`plaudit init --citus`, runtime/citus.py); rendered with {{ schema }}, {{ user_id_type }}
-- and {{ citus }} like every schema file.
--
-- A rule run on Citus is a few statements over a distributed staging table, citus_stage
-- (sql/citus/distribute.sql), co-located with user_badge and user_progress (citus_run):
--   1. INSERT INTO citus_stage SELECT <the rule's rows>: Citus runs it on the workers, one
--      task per shard, when every table the rule reads is distributed by its user column in
--      the same co-location group (or a reference table) and joined on it; otherwise Citus
--      itself pulls the rows to the coordinator or repartitions them (its EXPLAIN says which:
--      citus_route below);
--   2. the grants, the progress and the progress to clear, each an INSERT ... SELECT or
--      DELETE between co-located tables on user_id: pushed down to the workers, always.
-- Staging rather than run_rule's one statement with data-modifying CTEs: Citus plans those
-- recursively (through the coordinator), and refuses its correlated subqueries over a CTE.
{% if citus %}
-- How Citus runs step 1 for this rule SQL, from Citus's own EXPLAIN of it (planned, never
-- executed): 'workers' with the number of shard tasks, or 'coordinator' and why (Citus's
-- "INSERT/SELECT method": "pull to coordinator" or "repartition"). Subplans Citus computes on
-- the coordinator first (a CTE or subquery it could not push down) are named in the reason.
CREATE OR REPLACE FUNCTION {{ schema }}.citus_route(
    p_sql text,
    p_params text[] DEFAULT '{}',
    p_search_path text DEFAULT NULL
) RETURNS TABLE (route text, reason text)
LANGUAGE plpgsql AS $function$
DECLARE
    v_plan text;
    v_tasks text;
    v_subplans int;
    v_path text := current_setting('search_path');
BEGIN
    -- in a subtransaction rolled back on purpose: a worker that fails to plan its task
    -- (Citus shows "Could not get remote plan") leaves its side of the transaction aborted
    BEGIN
        PERFORM set_config('search_path', p_search_path, true) WHERE p_search_path IS NOT NULL;
        PERFORM set_config('citus.enable_repartition_joins', 'on', true);  -- as run_rule
        SELECT string_agg(line, E'\n') INTO v_plan
        FROM {{ schema }}.citus_explain(p_sql, p_params) AS line;
        RAISE EXCEPTION USING ERRCODE = 'P0P01', MESSAGE = v_plan;
    EXCEPTION WHEN SQLSTATE 'P0P01' THEN
        GET STACKED DIAGNOSTICS v_plan = MESSAGE_TEXT;
    END;
    PERFORM set_config('search_path', v_path, true);
    v_subplans := (SELECT count(*) FROM regexp_matches(v_plan, 'Distributed Subplan', 'g'));
    IF v_plan ~ 'Could not get remote plan' THEN
        -- e.g. Citus 13.2 deparses a simple CASE (CASE x WHEN 1 ...) in a pushed-down
        -- INSERT ... SELECT as WHEN NULL::boolean; the plain SELECT through the coordinator
        -- is right
        RETURN QUERY SELECT 'coordinator'::text,
            'a worker could not plan the pushed-down statement (Citus 13.2 cannot push down a '
            'simple CASE x WHEN ... into INSERT ... SELECT: write CASE WHEN x = ...)'::text;
    ELSIF v_plan ~ 'INSERT/SELECT method: repartition' THEN
        RETURN QUERY SELECT 'coordinator'::text,
            'Citus repartitions the rows: the rule joins tables on a column other than their '
            'distribution column'::text;
    ELSIF v_plan ~ 'INSERT/SELECT method: pull to coordinator' THEN
        RETURN QUERY SELECT 'coordinator'::text,
            'Citus pulls the rows to the coordinator: ' || CASE
            WHEN v_plan ~ 'MapMergeJob' THEN
                'the rule joins tables on other columns than their user columns (Citus '
                'repartitions the join)'
            WHEN v_subplans > 0 THEN format(
                'parts of the rule''s query are computed first (%s subplans: a table on the '
                'coordinator, a CTE, a window, LIMIT or grouping not by user) and the rest '
                'cannot run shard by shard', v_subplans)
            ELSE 'the rule''s query cannot run shard by shard (a table not co-located or not '
                 'joined on its user column, or a grouping, window or LIMIT across users)' END;
    ELSIF v_plan ~ 'Custom Scan \(Citus Adaptive\)' THEN
        v_tasks := substring(v_plan FROM 'Task Count: (\d+)');
        RETURN QUERY SELECT 'workers'::text,
            format('pushed down: one task per shard (%s tasks)', v_tasks)
            || CASE WHEN v_subplans > 0
                    THEN format(', after %s subplan(s) computed via the coordinator', v_subplans)
                    ELSE '' END;
    ELSE
        RETURN QUERY SELECT 'coordinator'::text,
            'Citus runs it on the coordinator: the rule reads no distributed table'::text;
    END IF;
END;
$function$;

-- The EXPLAIN lines of step 1 for this rule SQL (run by citus_route, shown by preview).
CREATE OR REPLACE FUNCTION {{ schema }}.citus_explain(p_sql text, p_params text[] DEFAULT '{}')
RETURNS SETOF text
LANGUAGE plpgsql AS $function$
BEGIN
    RETURN QUERY EXECUTE format('EXPLAIN (COSTS OFF) %s',
                                {{ schema }}.citus_stage_insert(p_sql, 0, p_params));
END;
$function$;

-- Step 1's statement: the rule's canonical rows into the staging table, for run p_run_id.
-- The params are bound as a literal array, not as $1: Citus 13.2 sends a statement with a
-- parameter to the shards with a simple CASE (CASE x WHEN 1 ...) deparsed wrongly (WHEN
-- NULL::boolean: "operator does not exist: integer = boolean"). The rule reads its params
-- as ($1::text[])[n] (sqlgen/render.py), so $1 is replaced where it is not part of $10...
DROP FUNCTION IF EXISTS {{ schema }}.citus_stage_insert(text, bigint);
CREATE OR REPLACE FUNCTION {{ schema }}.citus_stage_insert(
    p_sql text, p_run_id bigint, p_params text[]
) RETURNS text
LANGUAGE sql IMMUTABLE AS $function$
    SELECT format(
        'INSERT INTO {{ schema }}.citus_stage '
        '(run_id, user_id, scope, level, achieved_at, value, meta, is_progress) '
        'SELECT %s, r.user_id::{{ user_id_type }}, r.scope::text, r.level::text, '
        'r.achieved_at::timestamptz, r.value::numeric, r.meta::jsonb, r.is_progress::boolean '
        'FROM (%s) AS r', p_run_id,
        regexp_replace(p_sql, '\$1(?![0-9])', format('%L::text[]', coalesce(p_params, '{}')), 'g'));
$function$;

-- One rule run on Citus: what run_rule's statement does (002_run_rule.sql), in statements
-- Citus can run, around the staging table. run_rule has taken the rule's lock and written the
-- run row, and calls this instead of its statement (whose data-modifying CTEs and correlated
-- subqueries over a CTE Citus cannot plan). Steps:
--   1. the rule's rows into citus_stage: the rule's SQL itself, pushed down when it can be
--      (citus_route); through rule_rows, on the coordinator, under a runner role (the boundary
--      around rule SQL, 008_boundary.sql);
--   2. grants (quiet ones seen), progress, and the progress its result no longer supports:
--      statements between co-located tables on user_id, run on the workers;
--   3. the news, from the grants this run inserted (run_id): notifications, the outbox, and
--      grant events for the rules reading this one (p_events), with the grants it moved.
-- Returns what run_rule's statement returns.
CREATE OR REPLACE FUNCTION {{ schema }}.citus_run(
    p_badge text,
    p_sql text,
    p_params text[],
    p_search_path text,
    p_run_id bigint,
    p_quiet_before timestamptz,
    p_filtered boolean,
    p_complete boolean,
    p_role text,
    p_channel text,
    p_events boolean
) RETURNS TABLE (levels jsonb, moved int, progressed int, notified int)
LANGUAGE plpgsql AS $function$
DECLARE
    v_written int;
    v_new int;
    v_changed int;
    v_cleared int := 0;
    v_moved jsonb := '[]';
    v_news jsonb;
    v_path text := current_setting('search_path');
BEGIN
    -- A complete backfill that Citus pushes down runs the rule's SQL itself; the rest runs
    -- it through rule_rows on the coordinator, which Citus plans as a distributed SELECT
    -- (pulling, repartitioning): inside an INSERT ... SELECT, Citus's own repartitioning
    -- of a join fails in a transaction that has read the same shards over several
    -- connections (SQLSTATE 25001), and incremental runs read few users anyway.
    IF p_role IS NULL AND p_complete AND (
            SELECT c.route FROM {{ schema }}.citus_route(p_sql, p_params, p_search_path) AS c)
            = 'workers' THEN
        -- the rule's unqualified names resolve where run_rule's path says, for it only
        PERFORM set_config('search_path', p_search_path, true) WHERE p_search_path IS NOT NULL;
        EXECUTE {{ schema }}.citus_stage_insert(p_sql, p_run_id, p_params);
        PERFORM set_config('search_path', v_path, true);
    ELSE
        INSERT INTO {{ schema }}.citus_stage
            (run_id, user_id, scope, level, achieved_at, value, meta, is_progress)
        SELECT p_run_id, r.user_id, r.scope, r.level, r.achieved_at, r.value, r.meta,
               r.is_progress
        FROM {{ schema }}.rule_rows(p_sql, p_params, p_search_path) AS r;
    END IF;
    IF p_events THEN
        -- the rule grants this run will move earlier: grant events too
        SELECT coalesce(jsonb_agg(jsonb_build_array(s.user_id, s.level, s.scope, s.achieved_at)),
                        '[]')
        INTO v_moved
        FROM {{ schema }}.citus_stage AS s
        JOIN {{ schema }}.user_badge AS ub
          ON ub.user_id = s.user_id AND ub.badge = p_badge AND ub.level = s.level
             AND ub.scope = s.scope
        WHERE s.run_id = p_run_id AND NOT s.is_progress AND ub.source = 'rule'
          AND s.achieved_at < ub.achieved_at;
    END IF;
    -- grants: a revoked grant is not granted again; a rule grant held moves to an earlier
    -- date; grants achieved before p_quiet_before are inserted seen
    INSERT INTO {{ schema }}.user_badge AS ub
        (user_id, badge, level, scope, achieved_at, value, meta, source, run_id, seen_at)
    SELECT s.user_id, p_badge, s.level, s.scope, s.achieved_at, s.value, s.meta, 'rule',
           p_run_id, CASE WHEN s.achieved_at < p_quiet_before THEN transaction_timestamp() END
    FROM {{ schema }}.citus_stage AS s
    WHERE s.run_id = p_run_id AND NOT s.is_progress AND NOT EXISTS (
        SELECT 1 FROM {{ schema }}.suppressed_grant AS sg
        WHERE sg.user_id = s.user_id AND sg.badge = p_badge
          AND sg.level = s.level AND sg.scope = s.scope)
    ON CONFLICT (user_id, badge, level, scope) DO UPDATE
        SET achieved_at = excluded.achieved_at
        WHERE excluded.achieved_at < ub.achieved_at AND ub.source = 'rule';
    GET DIAGNOSTICS v_written = ROW_COUNT;
    -- the new rows carry this run's id (a moved grant keeps its own)
    SELECT coalesce(jsonb_object_agg(g.level, g.n), '{}'), coalesce(sum(g.n), 0)::int
    INTO levels, v_new
    FROM (SELECT ub.level, count(*) AS n FROM {{ schema }}.user_badge AS ub
          WHERE ub.badge = p_badge AND ub.run_id = p_run_id GROUP BY ub.level) AS g;
    moved := v_written - v_new;
    notified := 0;
    IF v_new > 0 AND EXISTS (SELECT 1 FROM {{ schema }}.user_badge AS ub
                             WHERE ub.badge = p_badge AND ub.run_id = p_run_id
                               AND ub.seen_at IS NULL) THEN
        -- the news: new grants not quiet, notified on commit and written to the outbox.
        -- Read into a variable first: Citus runs a statement that writes a temporary or
        -- coordinator table from a distributed SELECT in another session.
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'user_id', g.user_id, 'level', g.level, 'scope', g.scope,
                   'position', l.position,
                   'notice', {{ schema }}.grant_notice(g.user_id, p_badge, g.level, l.name,
                                                       g.scope, g.achieved_at, l.icon,
                                                       l.points))), '[]')
        INTO v_news
        FROM (SELECT ub.user_id, ub.level, ub.scope, ub.achieved_at
              FROM {{ schema }}.user_badge AS ub
              WHERE ub.badge = p_badge AND ub.run_id = p_run_id AND ub.seen_at IS NULL) AS g
        JOIN {{ schema }}.badge_level AS l ON l.badge = p_badge AND l.key = g.level;
        SELECT count(pg_notify(p_channel, n ->> 'notice'))::int INTO notified
        FROM jsonb_array_elements(v_news) AS n;
        IF EXISTS (SELECT 1 FROM {{ schema }}.webhook) THEN
            INSERT INTO {{ schema }}.outbox (user_id, action, badge, level, scope, position, notice)
            SELECT (n ->> 'user_id')::{{ user_id_type }}, 'grant', p_badge, n ->> 'level',
                   n ->> 'scope', (n ->> 'position')::int, (n ->> 'notice')::jsonb
            FROM jsonb_array_elements(v_news) AS n;
        END IF;
    END IF;
    IF p_events THEN
        -- grants as events for the rules reading this badge (run_rule's v_events): the new
        -- ones and the moved ones
        SELECT v_moved || coalesce(jsonb_agg(jsonb_build_array(ub.user_id, ub.level, ub.scope,
                                                                ub.achieved_at)), '[]')
        INTO v_moved
        FROM {{ schema }}.user_badge AS ub
        WHERE ub.badge = p_badge AND ub.run_id = p_run_id;
        INSERT INTO pg_temp.plaudit_batch (event_id, type, user_id, occurred_at, payload)
        SELECT NULL, 'badge:' || p_badge, (m ->> 0)::{{ user_id_type }},
               (m ->> 3)::timestamptz, jsonb_build_object('level', m ->> 1, 'scope', m ->> 2)
        FROM jsonb_array_elements(v_moved) AS m;
    END IF;
    IF NOT p_filtered THEN
        INSERT INTO {{ schema }}.user_progress AS up
            (user_id, badge, scope, value, next_level, expires_at, through_at, updated_at)
        SELECT s.user_id, p_badge, s.scope, s.value, s.level, s.achieved_at,
               (s.meta ->> 'through')::timestamptz, transaction_timestamp()
        FROM {{ schema }}.citus_stage AS s
        WHERE s.run_id = p_run_id AND s.is_progress AND s.value IS NOT NULL
        ON CONFLICT (user_id, badge, scope) DO UPDATE
            SET value = excluded.value, next_level = excluded.next_level,
                expires_at = excluded.expires_at, through_at = excluded.through_at,
                updated_at = excluded.updated_at
            WHERE (up.value, up.next_level, up.expires_at, up.through_at)
                  IS DISTINCT FROM (excluded.value, excluded.next_level,
                                    excluded.expires_at, excluded.through_at);
        GET DIAGNOSTICS v_changed = ROW_COUNT;
        -- progress its result does not support: everyone's in a complete backfill, the
        -- users an incremental run re-read and found nothing for (marker rows)
        IF p_complete THEN
            DELETE FROM {{ schema }}.user_progress AS up
            WHERE up.badge = p_badge AND NOT EXISTS (
                SELECT 1 FROM {{ schema }}.citus_stage AS s
                WHERE s.run_id = p_run_id AND s.is_progress AND s.value IS NOT NULL
                  AND s.user_id = up.user_id AND s.scope = up.scope);
        ELSE
            DELETE FROM {{ schema }}.user_progress AS up
            WHERE up.badge = p_badge
              AND up.user_id = ANY (ARRAY(
                  SELECT s.user_id FROM {{ schema }}.citus_stage AS s
                  WHERE s.run_id = p_run_id AND s.is_progress AND s.value IS NULL))
              AND NOT EXISTS (
                  SELECT 1 FROM {{ schema }}.citus_stage AS s
                  WHERE s.run_id = p_run_id AND s.is_progress AND s.value IS NOT NULL
                    AND s.user_id = up.user_id AND s.scope = up.scope);
        END IF;
        GET DIAGNOSTICS v_cleared = ROW_COUNT;
        progressed := v_changed + v_cleared;
    ELSE
        progressed := 0;
    END IF;
    DELETE FROM {{ schema }}.citus_stage AS s WHERE s.run_id = p_run_id;
    RETURN NEXT;
END;
$function$;
-- revoke: true on Citus (005_grants.sql revoke_stale): a complete backfill removes the rule
-- grants its rows no longer hold, logs each, and tells the outbox when announced.
CREATE OR REPLACE FUNCTION {{ schema }}.citus_revoke_stale(
    p_badge text,
    p_sql text,
    p_params text[],
    p_run_id bigint,
    p_announce boolean
) RETURNS int
LANGUAGE plpgsql AS $function$
DECLARE
    v_revoked int;
    v_gone jsonb;
BEGIN
    INSERT INTO {{ schema }}.citus_stage
        (run_id, user_id, scope, level, achieved_at, value, meta, is_progress)
    SELECT p_run_id, r.user_id, r.scope, r.level, r.achieved_at, r.value, r.meta, r.is_progress
    FROM {{ schema }}.rule_rows(p_sql, p_params, coalesce(
        (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'rule_search_path'),
        current_setting('search_path'))) AS r
    WHERE NOT r.is_progress;
    -- read into a variable: Citus runs a statement writing a coordinator table from a
    -- distributed SELECT in another session
    SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', ub.user_id, 'level', ub.level,
                                                 'scope', ub.scope,
                                                 'achieved_at', ub.achieved_at)), '[]')
    INTO v_gone
    FROM {{ schema }}.user_badge AS ub
    WHERE ub.badge = p_badge AND ub.source = 'rule' AND NOT EXISTS (
        SELECT 1 FROM {{ schema }}.citus_stage AS s
        WHERE s.run_id = p_run_id AND s.user_id = ub.user_id AND s.level = ub.level
          AND s.scope = ub.scope);
    DELETE FROM {{ schema }}.user_badge AS ub
    WHERE ub.badge = p_badge AND ub.source = 'rule' AND NOT EXISTS (
        SELECT 1 FROM {{ schema }}.citus_stage AS s
        WHERE s.run_id = p_run_id AND s.user_id = ub.user_id AND s.level = ub.level
          AND s.scope = ub.scope);
    GET DIAGNOSTICS v_revoked = ROW_COUNT;
    INSERT INTO {{ schema }}.grant_log
        (user_id, badge, level, scope, action, source, reason, achieved_at, run_id)
    SELECT g.user_id, p_badge, g.level, g.scope, 'revoke', 'rule',
           'no longer granted by the rule (revoke: true)', g.achieved_at, p_run_id
    FROM jsonb_to_recordset(v_gone)
        AS g (user_id {{ user_id_type }}, level text, scope text, achieved_at timestamptz);
    IF p_announce AND EXISTS (SELECT 1 FROM {{ schema }}.webhook) THEN
        INSERT INTO {{ schema }}.outbox (user_id, action, badge, level, scope, position, notice)
        SELECT g.user_id, 'revoke', p_badge, g.level, g.scope, l.position,
               {{ schema }}.grant_notice(g.user_id, p_badge, g.level, l.name, g.scope,
                                         g.achieved_at, l.icon, l.points)::jsonb
        FROM jsonb_to_recordset(v_gone)
            AS g (user_id {{ user_id_type }}, level text, scope text, achieved_at timestamptz)
        JOIN {{ schema }}.badge_level AS l ON l.badge = p_badge AND l.key = g.level;
    END IF;
    DELETE FROM {{ schema }}.citus_stage AS s WHERE s.run_id = p_run_id;
    RETURN v_revoked;
END;
$function$;
{% endif %}
