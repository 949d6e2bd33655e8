-- Running as database jobs: the procedures `plaudit schedule` installs as pg_cron jobs (any
-- scheduler can CALL them), the watchdog that enforces rule timeouts inside them, retention,
-- and the runner role of `plaudit init --runner-role`. Re-runnable (IF NOT EXISTS, CREATE OR
-- REPLACE). Rendered with {{ schema }} like the other schema files.
--
-- Why a watchdog: rules inside one statement (a batch, a job) cannot time-limit themselves
-- (run_timed in 004_events.sql explains it); each publishes its deadline and the watchdog job
-- cancels a session past it, every minute. `plaudit run` watches its own session itself.

-- A rule's `timeout:` (or statement_timeout) as an interval: a bare number is milliseconds,
-- as in PostgreSQL's statement_timeout.
CREATE OR REPLACE FUNCTION {{ schema }}.timeout_interval(p_timeout text) RETURNS interval
LANGUAGE sql IMMUTABLE AS $function$
    SELECT CASE WHEN btrim(p_timeout) ~ '^[0-9]+$' THEN (btrim(p_timeout) || ' ms')::interval
                ELSE btrim(p_timeout)::interval END;
$function$;

-- Whether a session's application_name publishes a rule deadline (run_timed) now past.
CREATE OR REPLACE FUNCTION {{ schema }}.past_deadline(p_application_name text) RETURNS boolean
LANGUAGE sql STABLE AS $function$
    SELECT CASE WHEN p_application_name ~ '^plaudit:[0-9]{1,15}:'
                THEN split_part(p_application_name, ':', 2)::bigint
                     <= extract(epoch FROM clock_timestamp()) * 1000
                ELSE false END;
$function$;

-- Cancel the rule runs of this database's sessions that are past their deadline; returns how
-- many. Run every minute by the watchdog job, so a rule's timeout holds to the minute in jobs.
CREATE OR REPLACE FUNCTION {{ schema }}.job_watchdog() RETURNS int
LANGUAGE sql AS $function$
    WITH overdue AS MATERIALIZED (
        SELECT a.pid
        FROM pg_stat_activity AS a
        WHERE a.datname = current_database()
          AND a.pid <> pg_backend_pid()
          AND {{ schema }}.past_deadline(a.application_name)
    )
    SELECT count(*) FILTER (WHERE pg_cancel_backend(o.pid))::int FROM overdue AS o;
$function$;

-- `plaudit run`'s watchdog, every 50 ms: cancel session p_pid's rule run if it is past its
-- deadline, unless that deadline is p_spare (the one cancelled last time: a cancel is sent
-- once, so a second one cannot land after the rule has handled the first). Returns the
-- deadline it cancelled, or NULL.
CREATE OR REPLACE FUNCTION {{ schema }}.watch_session(p_pid int, p_spare text DEFAULT NULL)
RETURNS text
LANGUAGE sql AS $function$
    -- materialized: the cancel must come after the checks (a plain WHERE may order them so)
    WITH overdue AS MATERIALIZED (
        SELECT a.pid, a.application_name
        FROM pg_stat_activity AS a
        WHERE a.pid = p_pid AND a.application_name IS DISTINCT FROM p_spare
          AND {{ schema }}.past_deadline(a.application_name)
    )
    SELECT o.application_name FROM overdue AS o WHERE pg_cancel_backend(o.pid);
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
CREATE OR REPLACE FUNCTION {{ schema }}.prune(p_keep interval DEFAULT '{{ defaults.retention_runs }}') RETURNS int
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
    p_timeout text DEFAULT '{{ defaults.statement_timeout }}'
)
LANGUAGE plpgsql AS $procedure$
DECLARE
    v_events int;
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
        FOR v_run IN SELECT * FROM {{ schema }}.run_batch(p_timeout) LOOP
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
-- under the watchdog; several of them defer their users' leaderboard scores and recompute
-- each user once when all ran (score_catch_up, as `plaudit backfill` does); then retention:
-- old runs, and delivered outbox rows (012_outbox.sql). Raises at the end if a rule failed.
-- The rules run one after another: a pg_cron job is one backend (`plaudit backfill --jobs`
-- runs them at once from the command line; docs/operations.md).
-- CALL {{ schema }}.job_nightly();
CREATE OR REPLACE PROCEDURE {{ schema }}.job_nightly(
    p_timeout text DEFAULT '{{ defaults.backfill_timeout }}',  -- backfill_timeout: each due rule reads all history
    p_keep_runs interval DEFAULT '{{ defaults.retention_runs }}',
    p_keep_outbox interval DEFAULT '{{ defaults.retention_outbox }}'
)
LANGUAGE plpgsql AS $procedure$
DECLARE
    v_slug text;
    v_run record;
    v_runs int := 0;
    v_failed text[] := '{}';
    -- the list is fixed before the first commit: a rule repaired by the loop stays in it
    v_due text[] := ARRAY(SELECT d.slug FROM {{ schema }}.due_rules() AS d);
BEGIN
    FOREACH v_slug IN ARRAY v_due LOOP
        IF cardinality(v_due) > 1 THEN
            PERFORM {{ schema }}.defer_scores();
        END IF;
        SELECT * INTO v_run FROM {{ schema }}.run_timed(v_slug, 'backfill', p_timeout);
        v_runs := v_runs + 1;
        IF v_run.status = 'failed' THEN
            v_failed := v_failed || v_run.message;
        END IF;
        COMMIT;
    END LOOP;
    -- bounded transactions: the leaderboard is never locked for long (and whatever a backfill
    -- that died half-way left)
    WHILE {{ schema }}.score_catch_up() > 0 LOOP
        COMMIT;
    END LOOP;
    PERFORM {{ schema }}.prune(p_keep_runs);
    PERFORM {{ schema }}.prune_outbox(p_keep_outbox);
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

