-- Executing one rule run. Every way of running a rule (CLI, Python API, pg_cron) ends here,
-- so lock, insert, progress and run log can never disagree between paths.
--
-- The caller owns the transaction: the run row commits (or rolls back) with its grants.
-- The per-rule statement_timeout is set by the caller for the statement calling this
-- function (PostgreSQL arms the timer when a top-level statement starts, so a SET inside a
-- function would come too late); a timeout is caught here like any other error.

CREATE OR REPLACE FUNCTION {{ schema }}.run_rule(
    p_badge text,
    p_mode text DEFAULT 'backfill',
    p_params text[] DEFAULT '{}',
    p_announce boolean DEFAULT false,
    p_dry_run boolean DEFAULT false
) RETURNS TABLE (run_id bigint, status text, granted int, progressed int, levels jsonb, message text)
LANGUAGE plpgsql AS $function$
DECLARE
    v_sql text;
    v_param_defs jsonb;
    v_params jsonb;
    v_started timestamptz := clock_timestamp();
    v_run_id bigint;
    v_levels jsonb := '{}';
    v_granted int := 0;
    v_progressed int := 0;
    -- a run restricted by params sees part of each user's history: its values are partial,
    -- so it must not overwrite progress (grants are still exact: the filter is the criterion)
    v_filtered boolean := EXISTS (SELECT 1 FROM unnest(p_params) AS v WHERE v IS NOT NULL);
    -- backfills award history: quiet (already seen, no notification) unless announced
    v_quiet boolean := p_mode = 'backfill' AND NOT p_announce;
    v_error text;
    v_state text;
BEGIN
    IF p_mode NOT IN ('backfill', 'incremental') THEN
        RAISE EXCEPTION 'unknown mode %', p_mode USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c.sql, c.params INTO v_sql, v_param_defs
    FROM {{ schema }}.compiled_rule AS c
    WHERE c.badge = p_badge AND c.mode = p_mode;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rule % has no compiled % SQL', p_badge, p_mode
            USING ERRCODE = 'undefined_object', HINT = 'run `plaudit deploy`';
    END IF;
    IF cardinality(p_params) > 16 OR jsonb_array_length(v_param_defs) > 16 THEN
        RAISE EXCEPTION 'rule % has more than 16 params', p_badge;
    END IF;
    SELECT coalesce(jsonb_object_agg(d.def ->> 'name', p_params[d.i]), '{}')
    INTO v_params
    FROM jsonb_array_elements(v_param_defs) WITH ORDINALITY AS d (def, i)
    WHERE p_params[d.i] IS NOT NULL;

    -- one run of a rule at a time; a busy rule is skipped, not queued
    IF NOT pg_try_advisory_xact_lock(hashtext('{{ schema }}'), hashtext(p_badge)) THEN
        message := format('%s: busy (another run holds its lock); skipped', p_badge);
        RAISE NOTICE '%', message;
        IF NOT p_dry_run THEN
            INSERT INTO {{ schema }}.run AS r (badge, mode, params, status, started_at, finished_at, message)
            VALUES (p_badge, p_mode, v_params, 'skipped', v_started, clock_timestamp(), message)
            RETURNING r.run_id INTO v_run_id;
        END IF;
        RETURN QUERY SELECT v_run_id, 'skipped'::text, 0, 0, '{}'::jsonb, message;
        RETURN;
    END IF;

    BEGIN
        IF p_dry_run THEN
            -- what a real run would add: rows not granted yet, per level
            EXECUTE format($q$
                WITH r AS MATERIALIZED (%1$s)
                SELECT coalesce(jsonb_object_agg(x.level, x.n), '{}')
                FROM (
                    SELECT r.level, count(*) AS n FROM r
                    WHERE NOT r.is_progress AND NOT EXISTS (
                        SELECT FROM {{ schema }}.user_badge AS ub
                        WHERE ub.user_id = r.user_id AND ub.badge = %2$L
                          AND ub.level = r.level AND ub.scope = r.scope)
                    GROUP BY r.level
                ) AS x
            $q$, v_sql, p_badge)
            INTO v_levels
            USING p_params[1], p_params[2], p_params[3], p_params[4], p_params[5],
                  p_params[6], p_params[7], p_params[8], p_params[9], p_params[10],
                  p_params[11], p_params[12], p_params[13], p_params[14], p_params[15],
                  p_params[16];
        ELSE
            INSERT INTO {{ schema }}.run AS r (badge, mode, params, status, started_at, finished_at)
            VALUES (p_badge, p_mode, v_params, 'ok', v_started, v_started)
            RETURNING r.run_id INTO v_run_id;

            -- Grants are only ever added. A grant already held keeps its row, except that a
            -- rule grant moves to an earlier achieved_at when the history shows one (an event
            -- that arrived late): this keeps incremental runs equal to a backfill.
            EXECUTE format($q$
                WITH r AS MATERIALIZED (%1$s),
                granted AS (
                    INSERT INTO {{ schema }}.user_badge AS ub
                        (user_id, badge, level, scope, achieved_at, value, meta, source, run_id, seen_at)
                    SELECT r.user_id, %2$L, r.level, r.scope, r.achieved_at, r.value, r.meta,
                           'rule', %3$s, CASE WHEN %4$L::boolean THEN now() END
                    FROM r WHERE NOT r.is_progress
                    ON CONFLICT (user_id, badge, level, scope) DO UPDATE
                        SET achieved_at = excluded.achieved_at
                        WHERE excluded.achieved_at < ub.achieved_at AND ub.source = 'rule'
                    RETURNING ub.level, (ub.xmax = 0) AS inserted
                ),
                progressed AS (
                    INSERT INTO {{ schema }}.user_progress AS up
                        (user_id, badge, scope, value, next_level, updated_at)
                    SELECT r.user_id, %2$L, r.scope, r.value, r.level, now()
                    FROM r WHERE r.is_progress AND NOT %5$L::boolean
                    ON CONFLICT (user_id, badge, scope) DO UPDATE
                        SET value = excluded.value, next_level = excluded.next_level,
                            updated_at = excluded.updated_at
                        WHERE (up.value, up.next_level)
                              IS DISTINCT FROM (excluded.value, excluded.next_level)
                    RETURNING 1
                )
                SELECT
                    (SELECT coalesce(jsonb_object_agg(g.level, g.n), '{}')
                     FROM (SELECT level, count(*) AS n FROM granted WHERE inserted GROUP BY level) AS g),
                    (SELECT count(*) FROM progressed)
            $q$, v_sql, p_badge, v_run_id, v_quiet, v_filtered)
            INTO v_levels, v_progressed
            USING p_params[1], p_params[2], p_params[3], p_params[4], p_params[5],
                  p_params[6], p_params[7], p_params[8], p_params[9], p_params[10],
                  p_params[11], p_params[12], p_params[13], p_params[14], p_params[15],
                  p_params[16];

            SELECT coalesce(sum(n::int), 0) INTO v_granted FROM jsonb_each_text(v_levels) AS l (level, n);
            UPDATE {{ schema }}.run AS r
            SET finished_at = clock_timestamp(), granted = v_granted, progressed = v_progressed
            WHERE r.run_id = v_run_id;
            -- a complete backfill repairs whatever a failed run may have missed
            IF p_mode = 'backfill' AND NOT v_filtered THEN
                UPDATE {{ schema }}.badge SET dirty = false WHERE slug = p_badge AND dirty;
            END IF;
        END IF;
    EXCEPTION WHEN query_canceled OR others THEN
        -- the block's subtransaction has rolled back this run's grants; record the failure
        GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
        message := format('%s: %s (SQLSTATE %s)', p_badge, v_error, v_state);
        v_run_id := NULL;
        IF NOT p_dry_run THEN
            INSERT INTO {{ schema }}.run AS r (badge, mode, params, status, started_at, finished_at, message)
            VALUES (p_badge, p_mode, v_params, 'failed', v_started, clock_timestamp(), message)
            RETURNING r.run_id INTO v_run_id;
            UPDATE {{ schema }}.badge SET dirty = true WHERE slug = p_badge;
        END IF;
        RETURN QUERY SELECT v_run_id, 'failed'::text, 0, 0, '{}'::jsonb, message;
        RETURN;
    END;
    RETURN QUERY SELECT v_run_id, 'ok'::text, v_granted, v_progressed, v_levels, NULL::text;
END;
$function$;
