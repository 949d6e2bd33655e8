-- Executing one rule run. Every way of running a rule (CLI, Python API, pg_cron) ends here,
-- so lock, insert, progress and run log can never disagree between paths.
--
-- The caller owns the transaction: the run row commits (or rolls back) with its grants.
-- The per-rule statement_timeout is set by the caller for the statement calling this
-- function (PostgreSQL arms the timer when a top-level statement starts, so a SET inside a
-- function would come too late); a timeout is caught here like any other error. Scheduled
-- jobs cannot do that for each rule: their watchdog cancels instead (007_jobs.sql).

-- A run that wrote no grants, on the run log: skipped (busy) or failed. A failed run marks the
-- rule dirty, for a backfill to repair what it missed. Every such run is recorded here.
CREATE OR REPLACE FUNCTION {{ schema }}.record_run(
    p_badge text,
    p_mode text,
    p_status text,
    p_started timestamptz,
    p_message text,
    p_params jsonb DEFAULT '{}'
) RETURNS bigint
LANGUAGE plpgsql AS $function$
DECLARE
    v_run_id bigint;
BEGIN
    INSERT INTO {{ schema }}.run AS r (badge, mode, params, status, started_at, finished_at, message)
    VALUES (p_badge, p_mode, coalesce(p_params, '{}'), p_status, p_started, clock_timestamp(),
            p_message)
    RETURNING r.run_id INTO v_run_id;
    IF p_status = 'failed' THEN
        UPDATE {{ schema }}.badge AS b SET dirty = true WHERE b.slug = p_badge;
    END IF;
    RETURN v_run_id;
END;
$function$;

-- What a notification of a new grant carries (run_rule's grants, award_badge's): small, as
-- NOTIFY allows < 8000 bytes, so the name and scope are cut short, and an icon longer than
-- 500 characters is left out rather than cut (a cut URL is a broken one; unseen() has it).
CREATE OR REPLACE FUNCTION {{ schema }}.grant_notice(
    p_user_id {{ user_id_type }},
    p_badge text,
    p_level text,
    p_level_name text,
    p_scope text,
    p_achieved_at timestamptz,
    p_icon text,
    p_points int
) RETURNS text
LANGUAGE sql IMMUTABLE AS $function$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'user_id', p_user_id, 'badge', p_badge, 'level', p_level,
        'name', left(p_level_name, 200), 'scope', nullif(left(p_scope, 200), ''),
        'icon', CASE WHEN length(p_icon) <= 500 THEN p_icon END, 'points', p_points,
        'achieved_at', p_achieved_at))::text;
$function$;

CREATE OR REPLACE FUNCTION {{ schema }}.run_rule(
    p_badge text,
    p_mode text DEFAULT 'backfill',
    p_params text[] DEFAULT '{}',
    p_announce boolean DEFAULT false,
    p_dry_run boolean DEFAULT false
) RETURNS TABLE (run_id bigint, status text, granted int, progressed int, levels jsonb, message text)
LANGUAGE plpgsql
-- No JIT for rule runs (restored when the function returns). The kinds' correlated per-user
-- lookups give large cost estimates, so JIT would inline and optimize dozens of functions:
-- measured at 100k users (bench/), compiling cost seconds per backfill and more than a
-- small incremental run itself, while the row-at-a-time work it speeds up is a minor share.
SET jit = off
AS $function$
DECLARE
    v_sql text;
    v_param_defs jsonb;
    v_params jsonb;
    v_started timestamptz := clock_timestamp();
    v_run_id bigint;
    v_levels jsonb := '{}';
    v_granted int := 0;
    v_moved int := 0;
    v_progressed int := 0;
    -- a run restricted by params sees part of each user's history: its values are partial,
    -- so it must not overwrite progress (grants are still exact: the filter is the criterion)
    v_filtered boolean := EXISTS (SELECT 1 FROM unnest(p_params) AS v WHERE v IS NOT NULL);
    -- New grants achieved before this are quiet: inserted as seen, and not notified.
    -- Backfills award history, so they are quiet unless announced, and even then grants
    -- older than notify.max_age stay quiet; incremental grants are news.
    v_quiet_before timestamptz := CASE
        WHEN p_mode = 'incremental' THEN '-infinity'
        WHEN p_announce THEN now() - coalesce(
            (SELECT value FROM {{ schema }}.meta WHERE key = 'notify_max_age'), '{{ defaults.notify_max_age }}')::interval
        ELSE 'infinity' END;
    -- notify settings are synced from plaudit.yaml by `deploy`
    v_channel text := coalesce(
        (SELECT value FROM {{ schema }}.meta WHERE key = 'notify_channel'), '{{ defaults.notify_channel }}');
    v_notified int;
    -- `plaudit init --runner-role`: the rule's SQL runs as this role, inside rule_rows
    -- (008_boundary.sql); this function writes what it returns
    v_role text := (SELECT value FROM {{ schema }}.meta WHERE key = 'rule_role');
    v_session jsonb;
    v_undone text;
    v_hash text;
    -- where the rule's unqualified names resolve: as deployed (configure), else this session's
    v_path text := coalesce((SELECT value FROM {{ schema }}.meta WHERE key = 'rule_search_path'),
                            current_setting('search_path'));
    -- Grants are events for the rules that read them (badge('slug')): each grant this run
    -- adds or moves goes into the session's batch as a `badge:<slug>` event, so that the
    -- loop running the batch (plaudit.run_batch) re-checks those rules after this one,
    -- in the same transaction. Only when a batch is open and an enabled rule reads this one.
    v_events boolean := to_regclass('pg_temp.plaudit_batch') IS NOT NULL AND EXISTS (
        SELECT FROM {{ schema }}.badge AS d
        WHERE d.enabled AND coalesce(d.definition -> 'depends_on', '[]') ? p_badge);
    -- a complete backfill also removes the progress rows its result no longer supports
    v_complete boolean;
    -- an incremental run reads the rule's rows through the rule's own function, whose plan
    -- the session keeps (008_boundary.sql, rule_function_for); else through rule_rows
    v_rows text;
    v_error text;
    v_state text;
    v_detail text;
BEGIN
    IF p_mode NOT IN ('backfill', 'incremental') THEN
        RAISE EXCEPTION 'unknown mode %', p_mode USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- FOR KEY SHARE: the badge cannot be deleted under the run (which writes its progress;
    -- user_progress has no foreign key to badge, migration 0008), once per run instead of
    -- once per progress row
    SELECT c.sql, c.params, b.definition_hash INTO v_sql, v_param_defs, v_hash
    FROM {{ schema }}.compiled_rule AS c
    JOIN {{ schema }}.badge AS b ON b.slug = c.badge
    WHERE c.badge = p_badge AND c.mode = p_mode
    FOR KEY SHARE OF b;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'rule % has no compiled % SQL', p_badge, p_mode
            USING ERRCODE = 'undefined_object', HINT = 'run `plaudit deploy`';
    END IF;
    v_complete := p_mode = 'backfill' AND NOT v_filtered;
    IF p_mode = 'incremental' THEN
        v_rows := {{ schema }}.rule_function_for(p_badge, v_sql, v_role)
                  || '($1, $2) AS f (user_id {{ user_id_type }}, scope text, level text, '
                  'achieved_at timestamptz, value numeric, meta jsonb, is_progress boolean)';
    END IF;
    SELECT coalesce(jsonb_object_agg(d.def ->> 'name', p_params[d.i]), '{}')
    INTO v_params
    FROM jsonb_array_elements(v_param_defs) WITH ORDINALITY AS d (def, i)
    WHERE p_params[d.i] IS NOT NULL;

    -- one run of a rule at a time; a busy rule is skipped, not queued
    IF NOT pg_try_advisory_xact_lock(hashtext('{{ schema }}'), hashtext(p_badge)) THEN
        message := format('%s: busy: another run holds its lock', p_badge);
        RAISE NOTICE '%', message;
        IF NOT p_dry_run THEN
            v_run_id := {{ schema }}.record_run(p_badge, p_mode, 'skipped', v_started, message,
                                                v_params);
        END IF;
        RETURN QUERY SELECT v_run_id, 'skipped'::text, 0, 0, '{}'::jsonb, message;
        RETURN;
    END IF;

    -- A rule reading grants (badge('slug'): composite rules) runs in a backfill right after
    -- the rules it reads wrote theirs, by the million, before autovacuum analyzes them: plan
    -- it on fresh statistics. Measured at 1M users (bench/): all_rounder 94 s on stale
    -- statistics, 12 s on fresh ones; the ANALYZE (a sample) takes about a second.
    -- (Not on Citus: ANALYZE of a distributed table is a command on every shard, which Citus
    -- refuses in a transaction that read them over several connections; each worker's
    -- autovacuum analyzes its shards, which is what the workers plan with.)
    IF p_mode = 'backfill' AND strpos(v_sql, '{{ schema }}.user_badge') > 0 AND NOT {{ citus }} THEN
        ANALYZE {{ schema }}.user_badge;
    END IF;

    BEGIN
        IF v_role IS NOT NULL THEN
            PERFORM {{ schema }}.check_boundary(v_role);
            PERFORM {{ schema }}.grant_batch(v_role);
        END IF;
        v_session := {{ schema }}.rule_session();
        IF p_dry_run THEN
            -- what a real run would add, per level
            SELECT coalesce(jsonb_object_agg(x.level, x.n), '{}') INTO v_levels
            FROM (SELECT n.level, count(*) AS n
                  FROM {{ schema }}.new_grants(p_badge, v_sql, p_params, v_path) AS n
                  GROUP BY n.level) AS x;
        ELSE
            INSERT INTO {{ schema }}.run AS r (badge, mode, params, status, started_at, finished_at)
            VALUES (p_badge, p_mode, v_params, 'ok', v_started, v_started)
            RETURNING r.run_id INTO v_run_id;

            -- Grants are only ever added. A grant already held keeps its row, except that a
            -- rule grant moves to an earlier achieved_at when the history shows one (an event
            -- that arrived late): this keeps incremental runs equal to a backfill. A revoked
            -- grant (suppressed_grant) is not granted again.
{%- if citus %}
            -- On Citus, statements Citus can run, on the workers where it can (013_citus.sql).
            -- A rule joining tables on other columns than their user columns needs
            -- repartitioning.
            PERFORM set_config('citus.enable_repartition_joins', 'on', true);
            SELECT c.levels, c.moved, c.progressed, c.notified
            INTO v_levels, v_moved, v_progressed, v_notified
            FROM {{ schema }}.citus_run(p_badge, v_sql, p_params, v_path, v_run_id,
                                        v_quiet_before, v_filtered, v_complete, v_role,
                                        v_channel, v_events) AS c;
{%- else %}
            EXECUTE format($q$
                WITH r AS MATERIALIZED (SELECT * FROM %1$s),
                granted AS (
                    INSERT INTO {{ schema }}.user_badge AS ub
                        (user_id, badge, level, scope, achieved_at, value, meta, source, run_id, seen_at)
                    SELECT r.user_id, %2$L, r.level, r.scope, r.achieved_at, r.value, r.meta,
                           'rule', %3$s,
                           CASE WHEN r.achieved_at < %4$L::timestamptz THEN now() END
                    FROM r
                    WHERE NOT r.is_progress AND NOT EXISTS (
                        SELECT FROM {{ schema }}.suppressed_grant AS sg
                        WHERE sg.user_id = r.user_id AND sg.badge = %2$L
                          AND sg.level = r.level AND sg.scope = r.scope)
                    ON CONFLICT (user_id, badge, level, scope) DO UPDATE
                        SET achieved_at = excluded.achieved_at
                        WHERE excluded.achieved_at < ub.achieved_at AND ub.source = 'rule'
                    RETURNING ub.user_id, ub.level, ub.scope, ub.achieved_at,
                              (ub.xmax = 0) AS inserted, ub.seen_at IS NULL AS unseen
                ),
                -- the news: new grants that are not quiet, each notified on commit and,
                -- while a webhook is configured, written to the outbox (012_outbox.sql)
                announced AS MATERIALIZED (
                    SELECT g.user_id, g.level, g.scope, l.position,
                           {{ schema }}.grant_notice(g.user_id, %2$L, g.level, l.name, g.scope,
                                                     g.achieved_at, l.icon, l.points) AS notice
                    FROM granted AS g
                    JOIN {{ schema }}.badge_level AS l ON l.badge = %2$L AND l.key = g.level
                    WHERE g.inserted AND g.unseen
                ),
                notified AS MATERIALIZED (
                    SELECT pg_notify(%6$L, a.notice) FROM announced AS a
                ),
                outboxed AS (
                    INSERT INTO {{ schema }}.outbox
                        (user_id, action, badge, level, scope, position, notice)
                    SELECT a.user_id, 'grant', %2$L, a.level, a.scope, a.position, a.notice::jsonb
                    FROM announced AS a
                    WHERE EXISTS (SELECT FROM {{ schema }}.webhook)
                    RETURNING 1
                ),
                progressed AS (
                    INSERT INTO {{ schema }}.user_progress AS up
                        (user_id, badge, scope, value, next_level, expires_at, through_at, updated_at)
                    -- a progress row's achieved_at is when its value lapses (streaks); its meta
                    -- carries the time of the latest source row counted (count, sum, gauge)
                    SELECT r.user_id, %2$L, r.scope, r.value, r.level, r.achieved_at,
                           (r.meta ->> 'through')::timestamptz, now()
                    FROM r WHERE r.is_progress AND r.value IS NOT NULL AND NOT %5$L::boolean
                    ON CONFLICT (user_id, badge, scope) DO UPDATE
                        SET value = excluded.value, next_level = excluded.next_level,
                            expires_at = excluded.expires_at, through_at = excluded.through_at,
                            updated_at = excluded.updated_at
                        WHERE (up.value, up.next_level, up.expires_at, up.through_at)
                              IS DISTINCT FROM (excluded.value, excluded.next_level,
                                                excluded.expires_at, excluded.through_at)
                    RETURNING 1
                ),
                -- progress its result does not support is gone (the source rows were
                -- deleted): everyone's in a complete backfill, the users an incremental run
                -- re-read and found nothing for (marker rows: progress with a NULL value,
                -- render._clearing); grants are never taken back here
                cleared AS (
                    DELETE FROM {{ schema }}.user_progress AS up
                    WHERE up.badge = %2$L AND NOT %5$L::boolean AND %7$s
                      AND NOT EXISTS (
                          SELECT FROM r
                          WHERE r.is_progress AND r.value IS NOT NULL
                            AND r.user_id = up.user_id AND r.scope = up.scope)
                    RETURNING 1
                )%8$s
                SELECT
                    (SELECT coalesce(jsonb_object_agg(g.level, g.n), '{}')
                     FROM (SELECT level, count(*) AS n FROM granted WHERE inserted GROUP BY level) AS g),
                    (SELECT count(*) FROM granted WHERE NOT inserted),
                    (SELECT count(*) FROM progressed) + (SELECT count(*) FROM cleared),
                    (SELECT count(*) FROM notified)
            $q$, coalesce(v_rows, format('{{ schema }}.rule_rows(%L, $1, $2)', v_sql)),
                 p_badge, v_run_id, v_quiet_before, v_filtered, v_channel,
                 -- which progress rows may go: all of the badge's, or the marked users'
                 -- (an array, so that they are looked up by key, not by scanning the badge)
                 CASE WHEN v_complete THEN 'TRUE' ELSE
                     'up.user_id = ANY (ARRAY(SELECT r.user_id FROM r '
                     'WHERE r.is_progress AND r.value IS NULL))' END,
                 CASE WHEN v_events THEN format($e$,
                -- grants as events for the rules reading this badge (v_events)
                grant_events AS (
                    INSERT INTO pg_temp.plaudit_batch (event_id, type, user_id, occurred_at, payload)
                    SELECT NULL, 'badge:' || %1$L, g.user_id, g.achieved_at,
                           jsonb_build_object('level', g.level, 'scope', g.scope)
                    FROM granted AS g
                    RETURNING 1
                )$e$, p_badge) ELSE '' END)
            INTO v_levels, v_moved, v_progressed, v_notified
            USING p_params, v_path;
{%- endif %}
            -- revoke: true: a complete backfill removes the rule grants it no longer returns
            IF p_mode = 'backfill' AND NOT v_filtered
               AND (SELECT b.revoke FROM {{ schema }}.badge AS b WHERE b.slug = p_badge) THEN
                PERFORM {{ schema }}.revoke_stale(p_badge, v_sql, p_params, v_run_id,
                                                 p_announce);
            END IF;

            UPDATE {{ schema }}.run AS r
            SET finished_at = clock_timestamp(),
                granted = (SELECT coalesce(sum(n::int), 0) FROM jsonb_each_text(v_levels) AS l (level, n)),
                moved = v_moved, progressed = v_progressed
            WHERE r.run_id = v_run_id;
            -- a complete backfill repairs whatever a failed run may have missed, and brings
            -- a new or changed rule up to date
            -- (unless a deploy changed the rule meanwhile: then its new SQL is still due)
            IF v_complete THEN
                UPDATE {{ schema }}.badge SET dirty = false, due = NULL
                WHERE slug = p_badge AND (dirty OR due IS NOT NULL)
                  AND definition_hash = v_hash;
            END IF;
        END IF;
        -- what a run adds (or a dry run would add), per level
        SELECT coalesce(sum(n::int), 0) INTO v_granted FROM jsonb_each_text(v_levels) AS l (level, n);
        -- what the rule may have changed in the session besides its rows, undone
        v_undone := {{ schema }}.restore_session(v_session, p_badge);
        IF v_undone IS NOT NULL AND NOT p_dry_run THEN
            UPDATE {{ schema }}.run AS r
            SET message = format('%s: undone after the rule: %s', p_badge, v_undone)
            WHERE r.run_id = v_run_id;
        END IF;
        -- New grants of a badge: analyze now, not when autovacuum gets to it (10% of the
        -- table must change first, which a badge's grants among millions may never be).
        -- Planned on statistics without the badge, incremental runs' lookups of a user's
        -- grants scanned every grant of the badge instead: measured (bench/), all_rounder's
        -- runs took 3.3 s instead of milliseconds after its backfill at 1M users, and 136 ms
        -- per batch at 10k users after it wrote 304 grants. ANALYZE reads a sample: a third
        -- of a second at 5M grants.
        IF p_mode = 'backfill' AND NOT p_dry_run AND v_granted > 0 AND NOT {{ citus }} THEN
            ANALYZE {{ schema }}.user_badge;
        END IF;
    EXCEPTION WHEN query_canceled OR others THEN
        -- the block's subtransaction has rolled back this run's grants; record the failure
        GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE,
                                v_detail = PG_EXCEPTION_DETAIL;
        -- the detail names the culprit, e.g. an award's level that is not one of the rule's
        message := format('%s: %s (SQLSTATE %s)', p_badge, v_error, v_state)
                   || coalesce(': ' || nullif(v_detail, ''), '');
        -- settings roll back with the block; session advisory locks do not
        IF v_session IS NOT NULL THEN
            PERFORM {{ schema }}.restore_session(v_session, p_badge);
        END IF;
        v_run_id := NULL;
        IF NOT p_dry_run THEN
            v_run_id := {{ schema }}.record_run(p_badge, p_mode, 'failed', v_started, message,
                                                v_params);
        END IF;
        RETURN QUERY SELECT v_run_id, 'failed'::text, 0, 0, '{}'::jsonb, message;
        RETURN;
    END;
    RETURN QUERY SELECT v_run_id, 'ok'::text, v_granted, v_progressed, v_levels, NULL::text;
END;
$function$;
