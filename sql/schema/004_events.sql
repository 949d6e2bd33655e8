-- The incremental path: the event queue, trigger capture of app tables, batches consumed
-- exactly once, per-event checks, and seen/unseen grants. Re-runnable (IF NOT EXISTS,
-- CREATE OR REPLACE). Rendered with Jinja: the configured schema and user id type.
--
-- A batch lives in the temporary table pg_temp.plaudit_batch, which the rendered rules read
-- through `affected()` and `batch`. Taking events from the queue deletes them in the
-- transaction that runs the rules on them, so their grants and their consumption commit (or
-- roll back) together: an event is processed exactly once.

-- Enqueue an event. Callable from any language: SELECT plaudit.track('comment_created', 7);
-- The app's API (track, check, unseen, mark_seen) and the capture trigger run as plaudit's
-- owner (SECURITY DEFINER, search_path pinned): an app role needs only EXECUTE on them
-- (README, "Least privilege"), never write access to plaudit's tables.
CREATE OR REPLACE FUNCTION {{ schema }}.track(
    p_type text,
    p_user_id {{ user_id_type }},
    p_occurred_at timestamptz DEFAULT now(),
    p_payload jsonb DEFAULT '{}'
) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
    INSERT INTO {{ schema }}.event (type, user_id, occurred_at, payload)
    VALUES (p_type, p_user_id, coalesce(p_occurred_at, now()), coalesce(p_payload, '{}'))
    RETURNING event_id;
$function$;

-- `plaudit run --follow` sleeps on LISTEN {{ schema }}_event; one notification per inserting
-- statement (identical notifications of a transaction are collapsed by PostgreSQL).
CREATE OR REPLACE FUNCTION {{ schema }}.event_inserted() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    PERFORM pg_notify('{{ schema }}_event', '');
    RETURN NULL;
END;
$function$;

CREATE OR REPLACE TRIGGER event_inserted
    AFTER INSERT ON {{ schema }}.event
    FOR EACH STATEMENT EXECUTE FUNCTION {{ schema }}.event_inserted();

-- An empty batch table for this session's user id type. Every way of filling it starts here
-- and the event loop (run_batch) empties it when done, so a batch does not outlive the
-- transaction that ran it, even when check() runs in an application's session.
-- Not ON COMMIT DELETE ROWS: that truncates the table at every commit, rebuilding its index
-- and invalidating every cached plan that reads it (measured: ~2 ms a transaction, more
-- than a small check's rule runs). Emptied by DELETE instead, and truncated once it takes
-- more than 64 kB: autovacuum never visits temporary tables, and the planner scales the
-- analyzed rows by the table's pages, dead rows' included, so a table grown with them would
-- make a one-event batch look like hundreds.
CREATE OR REPLACE FUNCTION {{ schema }}.batch_reset() RETURNS void
LANGUAGE plpgsql AS $function$
BEGIN
    IF to_regclass('pg_temp.plaudit_batch') IS NOT NULL THEN
        IF (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a
            WHERE a.attrelid = to_regclass('pg_temp.plaudit_batch') AND a.attname = 'user_id'
           ) = '{{ user_id_type }}' AND EXISTS (
            SELECT FROM pg_attribute AS a
            WHERE a.attrelid = to_regclass('pg_temp.plaudit_batch') AND a.attname = 'rule') THEN
            IF pg_relation_size('pg_temp.plaudit_batch') > 65536 THEN
                TRUNCATE pg_temp.plaudit_batch;
            ELSE
                DELETE FROM pg_temp.plaudit_batch;
            END IF;
            RETURN;
        END IF;
        -- made by a plaudit schema with another user id type (or an older plaudit)
        DROP TABLE pg_temp.plaudit_batch;
    END IF;
    CREATE TEMPORARY TABLE plaudit_batch (
        event_id bigint,
        type text NOT NULL,
        user_id {{ user_id_type }} NOT NULL,
        occurred_at timestamptz NOT NULL,
        payload jsonb NOT NULL,
        rule text  -- the only rule it is for (a deferred event), NULL: every rule
    );
    -- affected() is re-checked for each user the rule's lookups visit: an index probe, not a
    -- scan of the batch per user
    CREATE INDEX ON pg_temp.plaudit_batch (user_id);
END;
$function$;

-- Take up to p_limit pending events into the batch, with up to p_limit later events of their
-- users, consuming them in this transaction.
-- SKIP LOCKED instead of an event_id high-water mark: an event whose transaction commits
-- after later events were processed is simply still in the queue, and concurrent runners
-- take disjoint batches.
CREATE OR REPLACE FUNCTION {{ schema }}.take_events(p_limit int) RETURNS int
LANGUAGE plpgsql AS $function$
DECLARE
    v_taken int;
BEGIN
    PERFORM {{ schema }}.batch_reset();
    WITH head AS (
        SELECT q.event_id, q.user_id FROM {{ schema }}.event AS q
        ORDER BY q.event_id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    -- and the same users' later events, up to as many again: a queue drained in batches
    -- (a backlog) has rows of a user's later events in the tables already, which this batch
    -- reads; left for a later batch, they would be dated at or before the progress this
    -- batch writes, and read that user in full again instead of from it (sql/helpers.sql,
    -- `anchored`; measured at 1M users: BENCHMARKS.md, issue 16)
    -- (looked for among the next 10 x p_limit events, by key: a bounded read of a queue of
    -- any length, with no index by user to keep up at every enqueue)
    rest AS (
        SELECT q.event_id FROM {{ schema }}.event AS q
        WHERE q.event_id > (SELECT min(h.event_id) FROM head AS h)
          AND q.event_id <= (SELECT max(h.event_id) FROM head AS h) + 10::bigint * p_limit
          AND q.user_id IN (SELECT h.user_id FROM head AS h)
          AND q.event_id NOT IN (SELECT h.event_id FROM head AS h)
        ORDER BY q.event_id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    taken AS (
        DELETE FROM {{ schema }}.event AS e
        WHERE e.event_id IN (SELECT h.event_id FROM head AS h
                             UNION ALL
                             SELECT r.event_id FROM rest AS r)
        RETURNING e.event_id, e.type, e.user_id, e.occurred_at, e.payload, e.rule
    )
    INSERT INTO pg_temp.plaudit_batch (event_id, type, user_id, occurred_at, payload, rule)
    SELECT event_id, type, user_id, occurred_at, payload, rule FROM taken;
    GET DIAGNOSTICS v_taken = ROW_COUNT;
    -- the rules' plans depend on the batch size (index lookups per user, or a scan)
    ANALYZE pg_temp.plaudit_batch;
    -- a batch's rule runs look up a few users each: compiling them costs more than it saves
    PERFORM set_config('jit', 'off', true);
    RETURN v_taken;
END;
$function$;

-- Fill the batch with given events instead of queued ones (for check()).
-- p_events: [{type, user_id, occurred_at?, payload?}]
CREATE OR REPLACE FUNCTION {{ schema }}.batch_fill(p_events jsonb) RETURNS int
LANGUAGE plpgsql AS $function$
DECLARE
    v_new boolean := to_regclass('pg_temp.plaudit_batch') IS NULL;
    v_count int;
BEGIN
    IF jsonb_typeof(p_events) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'events must be a JSON array of {type, user_id, occurred_at, payload}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM {{ schema }}.batch_reset();
    INSERT INTO pg_temp.plaudit_batch (event_id, type, user_id, occurred_at, payload)
    SELECT NULL, x.type, x.user_id, coalesce(x.occurred_at, now()), coalesce(x.payload, '{}')
    FROM jsonb_to_recordset(p_events)
        AS x (type text, user_id {{ user_id_type }}, occurred_at timestamptz, payload jsonb);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_new THEN
        ANALYZE pg_temp.plaudit_batch;  -- once per session: checks are small batches
    END IF;
    RETURN v_count;
END;
$function$;

-- (the next rule of a batch was asked of next_batch_rule, after each rule: run_batch walks
-- the run order once instead)
DROP FUNCTION IF EXISTS {{ schema }}.next_batch_rule(text, text[]);

-- The batch's events for one rule, back in the queue for that rule alone (event.rule): the
-- rule was busy in another run. Returns how many.
CREATE OR REPLACE FUNCTION {{ schema }}.defer_rule_events(p_badge text) RETURNS int
LANGUAGE plpgsql AS $function$
DECLARE
    v_deferred int;
BEGIN
    INSERT INTO {{ schema }}.event (type, user_id, occurred_at, payload, rule)
    SELECT t.type, t.user_id, t.occurred_at, t.payload, p_badge
    FROM pg_temp.plaudit_batch AS t
    JOIN {{ schema }}.badge AS b ON b.slug = p_badge
    WHERE t.type = ANY (b.triggers) AND (t.rule IS NULL OR t.rule = p_badge);
    GET DIAGNOSTICS v_deferred = ROW_COUNT;
    RETURN v_deferred;
END;
$function$;

-- One rule on the current batch. Unlike a backfill, which skips a busy rule, a runner waits
-- for the rule's lock, a little (p_wait): another runner's run of the rule usually ends in
-- milliseconds. A wait longer than that (5 s, or half the rule's timeout if shorter), or any
-- wait at all for check() (an app's request must not wait for a batch), does not hold the
-- batch, nor lose its events for the rule, nor mark it dirty: the batch's events for the rule
-- go back to the queue for that rule only (event.rule), and the run is recorded as skipped.
-- The run itself is plaudit.run_rule in incremental mode.
CREATE OR REPLACE FUNCTION {{ schema }}.run_batch_rule(
    p_badge text,
    p_wait boolean DEFAULT true,
    p_timeout interval DEFAULT NULL  -- the rule's timeout (else statement_timeout's)
)
RETURNS TABLE (run_id bigint, status text, granted int, progressed int, levels jsonb, message text)
LANGUAGE plpgsql AS $function$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_lock_timeout text := current_setting('lock_timeout');
    v_timeout interval := coalesce(
        p_timeout, nullif(current_setting('statement_timeout'), '0')::interval);
    v_error text;
    v_state text;
    v_deferred int;
BEGIN
    BEGIN
        IF NOT p_wait THEN
            IF NOT pg_try_advisory_xact_lock(hashtext('{{ schema }}'), hashtext(p_badge)) THEN
                RAISE EXCEPTION 'another run holds its lock' USING ERRCODE = 'lock_not_available';
            END IF;
        ELSE
            PERFORM set_config('lock_timeout',
                (extract(epoch FROM least(coalesce(v_timeout / 2, '5s'), '5s')) * 1000)::bigint::text,
                true);
            PERFORM pg_advisory_xact_lock(hashtext('{{ schema }}'), hashtext(p_badge));
            PERFORM set_config('lock_timeout', v_lock_timeout, true);
        END IF;
    EXCEPTION WHEN query_canceled OR lock_not_available OR deadlock_detected THEN
        GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
        v_deferred := {{ schema }}.defer_rule_events(p_badge);
        message := format('%s: busy in another run (%s, SQLSTATE %s); %s event%s deferred to '
                          'the queue for it', p_badge, v_error, v_state, v_deferred,
                          CASE WHEN v_deferred = 1 THEN '' ELSE 's' END);
        run_id := {{ schema }}.record_run(p_badge, 'incremental', 'skipped', v_started, message);
        RETURN QUERY SELECT run_id, 'skipped'::text, 0, 0, '{}'::jsonb, message;
        RETURN;
    END;
    RETURN QUERY SELECT * FROM {{ schema }}.run_rule(p_badge, 'incremental');
END;
$function$;

-- One rule run under a deadline: its own `timeout:`, else p_timeout. Without p_timeout none
-- is published (check(), award/revoke: the caller's statement_timeout bounds the call). `incremental` runs
-- the rule on the current batch (run_batch_rule, p_wait as there), `backfill` a complete
-- backfill (run_rule).
--
-- The one timeout policy for rules inside a longer statement. PostgreSQL arms
-- statement_timeout once, when a top-level statement starts (a SET inside a function or a
-- procedure changes nothing for the running statement: tests/test_jobs.py shows it), so a
-- statement running several rules cannot time-limit each one itself. Instead each rule's
-- deadline is published in the session's application_name (`plaudit:<epoch ms>:<slug>`,
-- visible to other sessions at once, without a commit) and a watchdog cancels a session past
-- its deadline (job_watchdog, watch_session): pg_cron's watchdog job every minute, `plaudit
-- run`'s own watchdog thread every 50 ms. run_rule catches the cancellation like any other error: the
-- run is recorded as failed, the rule is marked dirty, and the loop goes on with the next.
CREATE OR REPLACE FUNCTION {{ schema }}.run_timed(
    p_badge text,
    p_mode text,
    p_timeout text DEFAULT NULL,
    p_wait boolean DEFAULT true
) RETURNS TABLE (run_id bigint, status text, granted int, progressed int, levels jsonb,
                 message text)
LANGUAGE plpgsql AS $function$
DECLARE
    v_timeout text := CASE WHEN p_timeout IS NOT NULL THEN coalesce(
        (SELECT b.timeout FROM {{ schema }}.badge AS b WHERE b.slug = p_badge), p_timeout) END;
    v_started timestamptz := clock_timestamp();
    v_deadline timestamptz := clock_timestamp() + {{ schema }}.timeout_interval(v_timeout);
    v_application text := current_setting('application_name');
    v_run record;
BEGIN
    BEGIN
        IF v_deadline IS NOT NULL THEN
            PERFORM set_config('application_name', left(format('plaudit:%s:%s',
                ceil(extract(epoch FROM v_deadline) * 1000)::bigint, p_badge), 63), false);
        END IF;
        IF p_mode = 'incremental' THEN
            SELECT * INTO v_run
            FROM {{ schema }}.run_batch_rule(
                p_badge, p_wait, {{ schema }}.timeout_interval(v_timeout)) AS r;
        ELSE
            SELECT * INTO v_run FROM {{ schema }}.run_rule(p_badge, 'backfill') AS r;
        END IF;
        PERFORM set_config('application_name', v_application, false);
    EXCEPTION WHEN query_canceled THEN
        -- a cancel that arrived just after run_rule had finished (the watchdog's, or the
        -- caller's): this block's work, the rule's grants included, is rolled back, so the
        -- rule is marked for backfill
        message := CASE WHEN clock_timestamp() >= v_deadline
                        THEN format('%s: timed out after %s (cancelled by the watchdog)',
                                    p_badge, v_timeout)
                        ELSE format('%s: cancelled (SQLSTATE 57014)', p_badge) END;
        run_id := {{ schema }}.record_run(p_badge, p_mode, 'failed', v_started, message);
        RETURN QUERY SELECT run_id, 'failed'::text, 0, 0, '{}'::jsonb, message;
        RETURN;
    END;
    IF v_run.status = 'failed' AND v_run.message LIKE '%(SQLSTATE 57014)%'
       AND clock_timestamp() >= v_deadline THEN
        v_run.message := format('%s: timed out after %s (cancelled by the watchdog)',
                                p_badge, v_timeout);
        UPDATE {{ schema }}.run AS r SET message = v_run.message WHERE r.run_id = v_run.run_id;
    END IF;
    RETURN QUERY SELECT v_run.run_id, v_run.status, v_run.granted, v_run.progressed,
                        v_run.levels, v_run.message;
END;
$function$;

-- THE event loop: run the rules the session's batch (pg_temp.plaudit_batch) triggers, in run
-- order, each in incremental mode under its deadline (run_timed). `plaudit run` (one
-- statement per batch), check(), the events job, award/revoke (recheck_readers) and a
-- backfill's dependents all run batches through it. It walks the enabled rules in run order
-- (005_grants.sql), the order every runner takes rule locks in, so concurrent runners cannot
-- deadlock; each runs if the batch triggers it as it is when its turn comes, because a rule's
-- grants join the batch as `badge:<slug>` events (run_rule) that trigger the rules reading
-- them, which come later in the order. The order is read once per batch: badge_run_order
-- walks the dependency graph, and asked again after each rule it cost more than a small
-- check's rule runs (measured at 100k users: 9% of a check).
-- p_timeout: the default rule timeout (NULL: none published); p_wait: wait a little for a busy
-- rule (runners) or defer its events at once (check); p_exclude: rules not to run (a
-- backfill runs them next). One row per rule run, `moved` read back from its run row. The
-- batch is emptied at the end.
CREATE OR REPLACE FUNCTION {{ schema }}.run_batch(
    p_timeout text DEFAULT NULL,
    p_wait boolean DEFAULT true,
    p_exclude text[] DEFAULT '{}'
) RETURNS TABLE (badge text, run_id bigint, status text, granted int, progressed int,
                 moved int, levels jsonb, message text, seconds double precision)
LANGUAGE plpgsql AS $function$
DECLARE
    v_rule record;
    v_slug text;
    v_run record;
BEGIN
    FOR v_rule IN
        SELECT b.slug, b.triggers
        FROM {{ schema }}.badge AS b
        JOIN {{ schema }}.badge_run_order AS o ON o.slug = b.slug
        WHERE b.enabled AND NOT b.slug = ANY (p_exclude)
        ORDER BY o.depth, b.slug
    LOOP
        v_slug := v_rule.slug;
        CONTINUE WHEN NOT EXISTS (
            SELECT FROM pg_temp.plaudit_batch AS t
            WHERE t.type = ANY (v_rule.triggers) AND (t.rule IS NULL OR t.rule = v_slug));
        SELECT * INTO v_run FROM {{ schema }}.run_timed(v_slug, 'incremental', p_timeout, p_wait);
        -- the run row, in a statement of its own: the one calling run_timed cannot see it
        RETURN QUERY
        SELECT v_slug, v_run.run_id, v_run.status, v_run.granted, v_run.progressed,
               coalesce(r.moved, 0), v_run.levels, v_run.message,
               extract(epoch FROM r.finished_at - r.started_at)::double precision
        FROM (SELECT) AS one
        LEFT JOIN {{ schema }}.run AS r ON r.run_id = v_run.run_id;
    END LOOP;
    -- the batch is spent: it must not outlive this transaction (batch_reset)
    DELETE FROM pg_temp.plaudit_batch;
END;
$function$;

-- A function whose result gains a column cannot be replaced (CREATE OR REPLACE keeps the
-- result type): it is dropped first, and DROP would take with it the EXECUTE an operator
-- granted the app's roles (operations.md, "The runner role"). retire_result drops it only
-- while its result lacks p_column, keeping its grantees aside for regrant, which gives them
-- back once the new function exists. (The grants below gained `icon` with the badge's face.)
CREATE OR REPLACE FUNCTION {{ schema }}.retire_result(p_routine text, p_column text)
RETURNS void
LANGUAGE plpgsql AS $function$
DECLARE
    v_oid oid := to_regprocedure(p_routine);
BEGIN
    IF v_oid IS NULL
       OR (SELECT p_column = ANY (p.proargnames) FROM pg_proc AS p WHERE p.oid = v_oid) THEN
        RETURN;
    END IF;
    CREATE TEMPORARY TABLE IF NOT EXISTS plaudit_regrant (routine text, grantee oid)
        ON COMMIT DROP;
    INSERT INTO pg_temp.plaudit_regrant
    SELECT p_routine, a.grantee
    FROM pg_proc AS p
    CROSS JOIN LATERAL aclexplode(p.proacl) AS a
    -- PUBLIC (0) never has it back: no plaudit function is executable by PUBLIC
    WHERE p.oid = v_oid AND a.privilege_type = 'EXECUTE' AND a.grantee NOT IN (0, p.proowner);
    EXECUTE format('DROP FUNCTION %s', v_oid::regprocedure);
END;
$function$;

CREATE OR REPLACE FUNCTION {{ schema }}.regrant(p_routine text) RETURNS void
LANGUAGE plpgsql AS $function$
DECLARE
    v_grantee text;
BEGIN
    IF to_regclass('pg_temp.plaudit_regrant') IS NULL THEN
        RETURN;  -- nothing was retired in this transaction
    END IF;
    FOR v_grantee IN EXECUTE 'SELECT DISTINCT r.grantee::regrole::text '
                             'FROM pg_temp.plaudit_regrant AS r WHERE r.routine = $1'
                     USING p_routine LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', p_routine, v_grantee);
    END LOOP;
END;
$function$;

-- The new grants of the given runs, with their names: what notifications carry.
SELECT {{ schema }}.retire_result('{{ schema }}.run_grants(bigint[])', 'icon');
CREATE OR REPLACE FUNCTION {{ schema }}.run_grants(p_run_ids bigint[])
RETURNS TABLE (user_id {{ user_id_type }}, badge text, level text, scope text, badge_name text,
               level_name text, points int, icon text, achieved_at timestamptz)
LANGUAGE plpgsql STABLE AS $function$
BEGIN
    -- PL/pgSQL, not SQL: Citus plans no LANGUAGE sql function reading its tables
    RETURN QUERY
        SELECT ub.user_id, ub.badge, ub.level, ub.scope, b.name, l.name, l.points, l.icon,
               ub.achieved_at
        FROM {{ schema }}.user_badge AS ub
        JOIN {{ schema }}.badge AS b ON b.slug = ub.badge
        JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
        WHERE ub.run_id = ANY(p_run_ids) AND ub.seen_at IS NULL
        ORDER BY ub.run_id, ub.achieved_at, ub.user_id, l.position, ub.scope;
END;
$function$;

-- Run the rules that the given events trigger, now, in the caller's transaction, and return
-- the grants they add. Nothing is enqueued or consumed: when the same events are also in the
-- queue, the later `plaudit run` finds their grants already made. A rule busy in another
-- run is skipped, not waited for (an app's request must not wait for a batch): its grants
-- then come from the queued event.
-- p_events: [{type, user_id, occurred_at?, payload?}]
SELECT {{ schema }}.retire_result('{{ schema }}.check(jsonb)', 'icon');
CREATE OR REPLACE FUNCTION {{ schema }}.check(p_events jsonb)
RETURNS TABLE (user_id {{ user_id_type }}, badge text, level text, scope text, badge_name text,
               level_name text, points int, icon text, achieved_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
DECLARE
    v_runs bigint[];
BEGIN
    PERFORM {{ schema }}.batch_fill(p_events);
    -- a busy rule is skipped, its events (grants of the rules it reads among them) left in the
    -- queue for it, as a runner's batch would leave them
    v_runs := ARRAY(SELECT r.run_id FROM {{ schema }}.run_batch(NULL, false) AS r
                    WHERE r.granted > 0);  -- which empties the batch
    RETURN QUERY SELECT * FROM {{ schema }}.run_grants(v_runs);
END;
$function$;
SELECT {{ schema }}.regrant('{{ schema }}.check(jsonb)');

SELECT {{ schema }}.retire_result(
    '{{ schema }}.check(text, {{ user_id_type }}, timestamptz, jsonb)', 'icon');
CREATE OR REPLACE FUNCTION {{ schema }}.check(
    p_type text,
    p_user_id {{ user_id_type }},
    p_occurred_at timestamptz DEFAULT now(),
    p_payload jsonb DEFAULT '{}'
) RETURNS TABLE (user_id {{ user_id_type }}, badge text, level text, scope text,
                 badge_name text, level_name text, points int, icon text,
                 achieved_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
    SELECT * FROM {{ schema }}.check(jsonb_build_array(jsonb_build_object(
        'type', p_type, 'user_id', p_user_id, 'occurred_at', p_occurred_at,
        'payload', p_payload)));
$function$;
SELECT {{ schema }}.regrant('{{ schema }}.check(text, {{ user_id_type }}, timestamptz, jsonb)');

-- The grants a user has not been shown yet, oldest award first.
SELECT {{ schema }}.retire_result('{{ schema }}.unseen({{ user_id_type }})', 'icon');
CREATE OR REPLACE FUNCTION {{ schema }}.unseen(p_user_id {{ user_id_type }})
RETURNS TABLE (badge text, level text, scope text, badge_name text, level_name text,
               points int, icon text, achieved_at timestamptz, awarded_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
BEGIN
    -- PL/pgSQL, not SQL: Citus plans no LANGUAGE sql function reading its tables
    RETURN QUERY
        SELECT ub.badge, ub.level, ub.scope, b.name, l.name, l.points, l.icon, ub.achieved_at,
               ub.awarded_at
        FROM {{ schema }}.user_badge AS ub
        JOIN {{ schema }}.badge AS b ON b.slug = ub.badge
        JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
        WHERE ub.user_id = p_user_id AND ub.seen_at IS NULL
        ORDER BY ub.awarded_at, ub.achieved_at, b.name, l.position, ub.scope;
END;
$function$;
SELECT {{ schema }}.regrant('{{ schema }}.unseen({{ user_id_type }})');

-- Mark a user's grants seen: all of them, or one badge (one level, one scope). Returns how
-- many were newly marked.
CREATE OR REPLACE FUNCTION {{ schema }}.mark_seen(
    p_user_id {{ user_id_type }},
    p_badge text DEFAULT NULL,
    p_level text DEFAULT NULL,
    p_scope text DEFAULT NULL
) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
DECLARE
    v_count int;
BEGIN
    -- PL/pgSQL, not SQL: Citus plans no LANGUAGE sql function reading its tables
        WITH marked AS (
            UPDATE {{ schema }}.user_badge AS ub SET seen_at = now()
            WHERE ub.user_id = p_user_id AND ub.seen_at IS NULL
              AND (p_badge IS NULL OR ub.badge = p_badge)
              AND (p_level IS NULL OR ub.level = p_level)
              AND (p_scope IS NULL OR ub.scope = p_scope)
            RETURNING 1
        )
        SELECT count(*)::int INTO v_count FROM marked;
    RETURN v_count;
END;
$function$;

-- Trigger capture: a statement-level trigger per configured event turns the rows an app
-- statement inserted, updated or deleted into events, in the app's own transaction.
-- TG_ARGV: event type, user column, time column ('' = the time of the change).
-- payload: the whole row (after an insert or update, before a delete). A row without a user
-- is no one's event, and must not make the app's write fail.
CREATE OR REPLACE FUNCTION {{ schema }}.capture_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
BEGIN
    EXECUTE format(
        'INSERT INTO {{ schema }}.event (type, user_id, occurred_at, payload) '
        'SELECT $1, r.%1$I::{{ user_id_type }}, %2$s, to_jsonb(r) FROM plaudit_rows AS r '
        'WHERE r.%1$I IS NOT NULL',
        TG_ARGV[1],
        CASE WHEN TG_ARGV[2] = '' THEN 'now()'
             ELSE format('coalesce(r.%I::timestamptz, now())', TG_ARGV[2]) END)
    USING TG_ARGV[0];
    RETURN NULL;
END;
$function$;

-- Install the triggers of plaudit.yaml `events:` and drop the ones no longer configured.
-- p_sources: [{name, table, on, user, at}]. Each trigger carries its definition as its
-- comment, so an unchanged mapping is left alone.
CREATE OR REPLACE FUNCTION {{ schema }}.install_event_triggers(p_sources jsonb)
RETURNS TABLE (event text, table_name text, change text)
LANGUAGE plpgsql AS $function$
DECLARE
    v_source jsonb;
    v_table regclass;
    v_column text;
    v_spec jsonb;
    v_wanted jsonb := '[]';
    v_trigger record;
BEGIN
    FOR v_source IN SELECT s FROM jsonb_array_elements(coalesce(p_sources, '[]')) AS s LOOP
        v_table := to_regclass(v_source ->> 'table');
        IF v_table IS NULL THEN
            RAISE EXCEPTION 'events.%: table % does not exist', v_source ->> 'name',
                v_source ->> 'table' USING ERRCODE = 'undefined_table';
        END IF;
        FOREACH v_column IN ARRAY ARRAY[v_source ->> 'user', v_source ->> 'at'] LOOP
            IF v_column IS NOT NULL AND NOT EXISTS (
                SELECT FROM pg_attribute AS a
                WHERE a.attrelid = v_table AND a.attname = v_column AND a.attnum > 0
                  AND NOT a.attisdropped) THEN
                RAISE EXCEPTION 'events.%: table % has no column %', v_source ->> 'name',
                    v_table, v_column USING ERRCODE = 'undefined_column';
            END IF;
        END LOOP;
        -- the casts the trigger makes must exist, or the app's writes would fail later
        BEGIN
            EXECUTE format('SELECT r.%I::{{ user_id_type }}, %s FROM %s AS r LIMIT 0',
                           v_source ->> 'user',
                           CASE WHEN v_source ->> 'at' IS NULL THEN 'now()'
                                ELSE format('r.%I::timestamptz', v_source ->> 'at') END,
                           v_table);
        EXCEPTION WHEN cannot_coerce OR datatype_mismatch THEN
            RAISE EXCEPTION 'events.%: %', v_source ->> 'name', SQLERRM
                USING ERRCODE = 'datatype_mismatch';
        END;
        v_spec := jsonb_build_object(
            'trigger', left('{{ schema }}_' || (v_source ->> 'name'), 63),
            'event', v_source ->> 'name', 'table', v_table::text, 'on', v_source ->> 'on',
            'user', v_source ->> 'user', 'at', v_source ->> 'at');
        v_wanted := v_wanted || v_spec;
    END LOOP;

    FOR v_trigger IN
        SELECT t.tgname, t.tgrelid::regclass AS rel,
               obj_description(t.oid, 'pg_trigger')::jsonb AS spec
        FROM pg_trigger AS t
        WHERE t.tgfoid = '{{ schema }}.capture_event()'::regprocedure
        ORDER BY t.tgrelid::regclass::text, t.tgname
    LOOP
        IF v_wanted @> jsonb_build_array(v_trigger.spec) THEN
            event := v_trigger.spec ->> 'event';
            table_name := v_trigger.rel::text;
            change := 'unchanged';
            RETURN NEXT;
            v_wanted := (SELECT coalesce(jsonb_agg(w), '[]') FROM jsonb_array_elements(v_wanted) AS w
                         WHERE w <> v_trigger.spec);
            CONTINUE;
        END IF;
        EXECUTE format('DROP TRIGGER %I ON %s', v_trigger.tgname, v_trigger.rel);
        IF NOT EXISTS (SELECT FROM jsonb_array_elements(v_wanted) AS w
                       WHERE w ->> 'event' = v_trigger.spec ->> 'event') THEN
            event := v_trigger.spec ->> 'event';
            table_name := v_trigger.rel::text;
            change := 'removed';
            RETURN NEXT;
        END IF;
    END LOOP;

    FOR v_spec IN SELECT w FROM jsonb_array_elements(v_wanted) AS w LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s TABLE AS plaudit_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION {{ schema }}.capture_event(%L, %L, %L)',
            v_spec ->> 'trigger', upper(v_spec ->> 'on'), v_spec ->> 'table',
            CASE WHEN v_spec ->> 'on' = 'delete' THEN 'OLD' ELSE 'NEW' END,
            v_spec ->> 'event', v_spec ->> 'user', coalesce(v_spec ->> 'at', ''));
        EXECUTE format('COMMENT ON TRIGGER %I ON %s IS %L',
                       v_spec ->> 'trigger', v_spec ->> 'table', v_spec::text);
        event := v_spec ->> 'event';
        table_name := v_spec ->> 'table';
        change := 'installed';
        RETURN NEXT;
    END LOOP;
END;
$function$;

-- Sync the settings of plaudit.yaml that live in the database; returns the trigger changes.
-- p_config: {notify_channel, notify_max_age, events: [{name, table, on, user, at}],
--            categories: [{key, name, i18n}]}
CREATE OR REPLACE FUNCTION {{ schema }}.configure(p_config jsonb)
RETURNS TABLE (event text, table_name text, change text)
LANGUAGE plpgsql AS $function$
BEGIN
    PERFORM (p_config ->> 'notify_max_age')::interval;  -- fails here, not in a later run
    -- rule_search_path: where rules' unqualified table names resolve, whoever runs them (an
    -- app calling check(), a job): the deploying session's search_path
    INSERT INTO {{ schema }}.meta AS m (key, value)
    SELECT s.key, s.value
    FROM (VALUES ('notify_channel', p_config ->> 'notify_channel'),
                 ('notify_max_age', p_config ->> 'notify_max_age'),
                 ('rule_search_path', current_setting('search_path'))) AS s (key, value)
    WHERE s.value IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE m.value <> excluded.value;
    -- leaderboards (009_leaderboard.sql): the groups, and scores cut in the timezone
    IF p_config ? 'groups' THEN
        DELETE FROM {{ schema }}.leaderboard_group AS g
        WHERE NOT p_config -> 'groups' ? g.name;
        INSERT INTO {{ schema }}.leaderboard_group AS g (name, query)
        SELECT e.key, e.value FROM jsonb_each_text(p_config -> 'groups') AS e
        ON CONFLICT (name) DO UPDATE SET query = excluded.query
        WHERE g.query <> excluded.query;
    END IF;
    -- a dry run (deploy --dry-run) does not rebuild every score under an exclusive lock
    IF p_config ? 'timezone' AND NOT coalesce((p_config ->> 'dry_run')::boolean, false) THEN
        PERFORM {{ schema }}.sync_scores(p_config ->> 'timezone');
    END IF;
    PERFORM {{ schema }}.sync_categories(p_config -> 'categories');  -- 010_trophy_case.sql
    IF p_config ? 'webhooks' AND NOT coalesce((p_config ->> 'dry_run')::boolean, false) THEN
        PERFORM {{ schema }}.sync_webhooks(p_config -> 'webhooks');  -- 012_outbox.sql
    END IF;
    RETURN QUERY SELECT * FROM {{ schema }}.install_event_triggers(p_config -> 'events');
END;
$function$;
