-- Running as database jobs: the procedures `plaudit schedule` installs as pg_cron jobs (any
-- scheduler can CALL them), the watchdog that enforces rule timeouts inside them, retention,
-- and the runner role of `plaudit init --runner-role`. Re-runnable (IF NOT EXISTS, CREATE OR
-- REPLACE). Rendered with {{ schema }} like the other schema files.
--
-- Why a watchdog. PostgreSQL arms statement_timeout once, when a top-level statement starts,
-- with the value it has then. A CALL is one top-level statement, however many transactions
-- its procedure commits: a SET (even after a COMMIT) inside it changes nothing for the
-- running CALL, and the timer armed for the CALL fires once, for the whole job, and is then
-- gone (measured on PostgreSQL 15; README, "Running as database jobs"). A procedure cannot
-- time-limit one of its own steps, so each rule a job runs publishes its deadline in the
-- session's application_name (`plaudit:<epoch>:<slug>`, visible to other sessions at once,
-- without a commit) and a watchdog job cancels a session past its deadline. run_rule catches
-- the cancellation like any other error: the run is recorded as failed, the rule is marked
-- dirty, and the job goes on with the next rule. The CLI does not need this: it issues each
-- rule as its own statement, under its own statement_timeout.

-- Failed runs of the last day (`plaudit status`) and retention read run rows by time.
CREATE INDEX IF NOT EXISTS run_started_idx ON {{ schema }}.run (started_at);

-- A rule's `timeout:` (or statement_timeout) as an interval: a bare number is milliseconds,
-- as in PostgreSQL's statement_timeout.
CREATE OR REPLACE FUNCTION {{ schema }}.timeout_interval(p_timeout text) RETURNS interval
LANGUAGE sql IMMUTABLE AS $function$
    SELECT CASE WHEN btrim(p_timeout) ~ '^[0-9]+$' THEN (btrim(p_timeout) || ' ms')::interval
                ELSE btrim(p_timeout)::interval END;
$function$;

-- One rule run inside a job: `incremental` on the current batch (run_batch_rule) or a complete
-- `backfill` (run_rule), with its deadline published for the watchdog while it runs.
CREATE OR REPLACE FUNCTION {{ schema }}.job_run_rule(
    p_badge text,
    p_mode text,
    p_timeout text DEFAULT '60s'
) RETURNS TABLE (run_id bigint, status text, granted int, message text)
LANGUAGE plpgsql AS $function$
DECLARE
    v_timeout text := coalesce(
        (SELECT b.timeout FROM {{ schema }}.badge AS b WHERE b.slug = p_badge), p_timeout);
    v_deadline timestamptz := clock_timestamp() + {{ schema }}.timeout_interval(v_timeout);
    v_application text := current_setting('application_name');
    v_run record;
BEGIN
    BEGIN
        PERFORM set_config('application_name', left(format('plaudit:%s:%s',
            ceil(extract(epoch FROM v_deadline))::bigint, p_badge), 63), false);
        IF p_mode = 'incremental' THEN
            SELECT * INTO v_run FROM {{ schema }}.run_batch_rule(p_badge) AS r;
        ELSE
            SELECT * INTO v_run FROM {{ schema }}.run_rule(p_badge, 'backfill') AS r;
        END IF;
        PERFORM set_config('application_name', v_application, false);
    EXCEPTION WHEN query_canceled THEN
        -- the watchdog's cancel arrived just after run_rule had finished: this block's work,
        -- the rule's grants included, is rolled back, so the rule is marked for backfill
        message := format('%s: timed out after %s (cancelled by the watchdog job)',
                          p_badge, v_timeout);
        INSERT INTO {{ schema }}.run AS r (badge, mode, status, started_at, finished_at, message)
        VALUES (p_badge, p_mode, 'failed', v_deadline - {{ schema }}.timeout_interval(v_timeout),
                clock_timestamp(), message)
        RETURNING r.run_id INTO run_id;
        UPDATE {{ schema }}.badge AS b SET dirty = true WHERE b.slug = p_badge;
        status := 'failed';
        granted := 0;
        RETURN NEXT;
        RETURN;
    END;
    run_id := v_run.run_id;
    status := v_run.status;
    granted := v_run.granted;
    message := v_run.message;
    IF status = 'failed' AND message LIKE '%(SQLSTATE 57014)%' AND clock_timestamp() >= v_deadline
    THEN
        message := format('%s: timed out after %s (cancelled by the watchdog job)',
                          p_badge, v_timeout);
        UPDATE {{ schema }}.run AS r SET message = job_run_rule.message
        WHERE r.run_id = job_run_rule.run_id;
    END IF;
    RETURN NEXT;
END;
$function$;

-- Cancel the rule runs of this database's jobs that are past their deadline; returns how many.
-- Run every minute by the watchdog job, so a rule's timeout holds to the minute in jobs.
CREATE OR REPLACE FUNCTION {{ schema }}.job_watchdog() RETURNS int
LANGUAGE sql AS $function$
    WITH overdue AS MATERIALIZED (
        SELECT a.pid
        FROM pg_stat_activity AS a
        WHERE a.datname = current_database()
          AND a.pid <> pg_backend_pid()
          AND a.application_name ~ '^plaudit:[0-9]{1,12}:'
          AND split_part(a.application_name, ':', 2)::bigint
              <= extract(epoch FROM clock_timestamp())
    )
    SELECT count(*) FILTER (WHERE pg_cancel_backend(o.pid))::int FROM overdue AS o;
$function$;

-- The rules a nightly job backfills, in run order: enabled rules without triggers (nothing
-- else re-checks them), dirty rules (a failed run left them behind), due rules (new or
-- changed, never backfilled as they are now), and the rules that read the grants of any of
-- them (composite rules), so that they see what the backfill added.
CREATE OR REPLACE FUNCTION {{ schema }}.due_rules()
RETURNS TABLE (slug text, reason text)
LANGUAGE sql STABLE AS $function$
    WITH RECURSIVE due (slug, reason) AS (
        SELECT b.slug, CASE WHEN b.dirty THEN 'dirty' WHEN b.due IS NOT NULL THEN b.due
                            ELSE 'no triggers' END
        FROM {{ schema }}.badge AS b
        WHERE b.enabled AND (b.dirty OR b.due IS NOT NULL OR b.triggers = '{}')
        UNION
        SELECT b.slug, 'reads ' || d.slug
        FROM due AS d
        JOIN {{ schema }}.badge AS b
          ON b.enabled AND coalesce(b.definition -> 'depends_on', '[]') ? d.slug
    )
    SELECT DISTINCT ON (o.depth, d.slug) d.slug, d.reason
    FROM due AS d
    JOIN {{ schema }}.badge_run_order AS o ON o.slug = d.slug
    ORDER BY o.depth, d.slug, d.reason <> 'dirty', d.reason NOT IN ('new', 'changed'),
             d.reason <> 'no triggers', d.reason;
$function$;

-- Retention: run rows older than p_keep, except each rule's latest run (`plaudit status` shows
-- it). Consumed events need none: taking an event deletes it, in the transaction that
-- processes it. Returns the number of run rows deleted.
CREATE OR REPLACE FUNCTION {{ schema }}.prune(p_keep interval DEFAULT '30 days') RETURNS int
LANGUAGE sql AS $function$
    WITH gone AS (
        DELETE FROM {{ schema }}.run AS r
        WHERE r.started_at < now() - p_keep
          AND r.run_id <> (SELECT max(l.run_id) FROM {{ schema }}.run AS l WHERE l.badge = r.badge)
        RETURNING 1
    )
    SELECT count(*)::int FROM gone;
$function$;

-- The end of a job: after every rule's work is committed, a failure makes the job fail, so
-- that the scheduler (cron.job_run_details) shows it.
CREATE OR REPLACE FUNCTION {{ schema }}.job_check(p_job text, p_runs int, p_failed text[])
RETURNS void
LANGUAGE plpgsql AS $function$
BEGIN
    IF cardinality(p_failed) > 0 THEN
        RAISE EXCEPTION 'plaudit % job: % of % rule runs failed, marked for backfill: %',
            p_job, cardinality(p_failed), p_runs, array_to_string(p_failed, '; ')
            USING HINT = 'the other runs are committed; `plaudit status` lists the failures';
    END IF;
END;
$function$;

-- The events job: drain the queue like `plaudit run --once`, one committed transaction per
-- batch (its events are consumed with the grants they lead to), each rule under the
-- watchdog. Raises at the end if a rule failed. CALL {{ schema }}.job_events();
CREATE OR REPLACE PROCEDURE {{ schema }}.job_events(
    p_batch_size int DEFAULT 1000,
    p_timeout text DEFAULT '60s'
)
LANGUAGE plpgsql AS $procedure$
DECLARE
    v_events int;
    v_slug text;
    v_run record;
    v_runs int := 0;
    v_failed text[] := '{}';
BEGIN
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION 'batch size must be at least 1, not %', p_batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        v_events := {{ schema }}.take_events(p_batch_size);
        v_slug := NULL;
        LOOP
            v_slug := {{ schema }}.next_batch_rule(v_slug);
            EXIT WHEN v_slug IS NULL;
            SELECT * INTO v_run FROM {{ schema }}.job_run_rule(v_slug, 'incremental', p_timeout);
            v_runs := v_runs + 1;
            IF v_run.status = 'failed' THEN
                v_failed := v_failed || v_run.message;
            END IF;
        END LOOP;
        COMMIT;
        EXIT WHEN v_events < p_batch_size;
    END LOOP;
    PERFORM {{ schema }}.job_check('events', v_runs, v_failed);
END;
$procedure$;

-- The nightly job: backfill the due rules (due_rules()), one committed transaction each, each
-- under the watchdog; then retention. Raises at the end if a rule failed.
-- CALL {{ schema }}.job_nightly();
CREATE OR REPLACE PROCEDURE {{ schema }}.job_nightly(
    p_timeout text DEFAULT '30min',  -- backfill_timeout: each due rule reads all history
    p_keep_runs interval DEFAULT '30 days'
)
LANGUAGE plpgsql AS $procedure$
DECLARE
    v_slug text;
    v_run record;
    v_runs int := 0;
    v_failed text[] := '{}';
BEGIN
    -- the list is fixed before the first commit: a rule repaired by the loop stays in it
    FOREACH v_slug IN ARRAY ARRAY(SELECT d.slug FROM {{ schema }}.due_rules() AS d) LOOP
        SELECT * INTO v_run FROM {{ schema }}.job_run_rule(v_slug, 'backfill', p_timeout);
        v_runs := v_runs + 1;
        IF v_run.status = 'failed' THEN
            v_failed := v_failed || v_run.message;
        END IF;
        COMMIT;
    END LOOP;
    PERFORM {{ schema }}.prune(p_keep_runs);
    COMMIT;
    PERFORM {{ schema }}.job_check('nightly', v_runs, v_failed);
END;
$procedure$;

-- `plaudit init --runner-role NAME`: the role rule queries run as (008_boundary.sql: rule_rows
-- runs a rule's SQL as its owner, this role, and nothing in a rule can switch back). It may
-- read what the operator grants it (the app tables the rules read) and plaudit's grants and
-- progress; it writes nothing and executes no plaudit function. Created NOLOGIN if missing;
-- an existing role is used as it is, unless it is a superuser or bypasses row security.
-- Returns what it did.
CREATE OR REPLACE FUNCTION {{ schema }}.setup_runner_role(p_role text)
RETURNS SETOF text
LANGUAGE plpgsql AS $function$
DECLARE
    v_role pg_roles;
BEGIN
    SELECT * INTO v_role FROM pg_roles AS r WHERE r.rolname = p_role;
    IF NOT FOUND THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', p_role);
        RETURN NEXT format('created role %s (NOLOGIN)', p_role);
    ELSIF v_role.rolsuper OR v_role.rolbypassrls THEN
        RAISE EXCEPTION 'role % is a superuser or bypasses row security: rule queries must run as a role that can only read the app', p_role
            USING ERRCODE = 'invalid_parameter_value', HINT = 'name a role of its own, e.g. plaudit_runner';
    END IF;
    -- the session's user gives plaudit's functions to the role: it must be a member
    IF NOT pg_has_role(session_user, p_role, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', p_role, session_user);
        RETURN NEXT format('granted %s to %s', p_role, session_user);
    END IF;
    INSERT INTO {{ schema }}.meta AS m (key, value) VALUES ('rule_role', p_role)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    PERFORM {{ schema }}.apply_rule_role();
    RETURN NEXT format('granted %s read access to plaudit''s grants and progress', p_role);
    RETURN NEXT format('rule queries run as %s', p_role);
END;
$function$;

-- Called by run_rule before a rule's SQL when a runner role is set: the batch table belongs to
-- the session's user, so the role is given read access to it (once per session).
CREATE OR REPLACE FUNCTION {{ schema }}.grant_batch(p_role text) RETURNS void
LANGUAGE plpgsql AS $function$
BEGIN
    IF to_regclass('pg_temp.plaudit_batch') IS NOT NULL
       AND NOT has_table_privilege(p_role, 'pg_temp.plaudit_batch', 'SELECT') THEN
        EXECUTE format('GRANT SELECT ON pg_temp.plaudit_batch TO %I', p_role);
    END IF;
END;
$function$;

DROP FUNCTION IF EXISTS {{ schema }}.enter_rule_role(text);
