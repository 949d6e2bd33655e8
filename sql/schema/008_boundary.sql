-- The boundary around a rule's SQL (README, "What a rule can do"). Rule SQL is written by
-- analysts and executes only here: plaudit.rule_rows() returns a rule's canonical rows, and
-- fixed SQL (run_rule, revoke_stale, preview_rule) writes grants and progress from them.
--
-- With a runner role (`plaudit init --runner-role NAME`, 007_jobs.sql), rule_rows,
-- explain_rule and query_rows are SECURITY DEFINER functions owned by that role: the rule's SQL runs as the
-- role, which may read the app tables granted to it and plaudit's grants and progress, and
-- nothing else. It cannot return to the session's role: PostgreSQL refuses SET ROLE, SET
-- SESSION AUTHORIZATION and set_config('role', ...) inside a security-definer function. It
-- executes no plaudit function (EXECUTE is revoked from PUBLIC, below) and writes no
-- plaudit table. What a rule can still do to its session (settings, advisory locks) is undone
-- after every rule by run_rule (rule_session / restore_session).
-- Without a runner role, they are SECURITY INVOKER: rules run as the caller.
-- Re-runnable; rendered with {{ schema }} and {{ user_id_type }} like the other files.

-- A rule's canonical rows. p_sql is a rule's compiled SQL as deployed (compiled_rule) or as
-- rendered from its file (preview, test), its placeholders $1..$16 bound to p_params as text.
CREATE OR REPLACE FUNCTION {{ schema }}.rule_rows(p_sql text, p_params text[] DEFAULT '{}')
RETURNS TABLE (user_id {{ user_id_type }}, scope text, level text, achieved_at timestamptz,
               value numeric, meta jsonb, is_progress boolean)
LANGUAGE plpgsql SECURITY INVOKER AS $function$
BEGIN
    IF cardinality(p_params) > 16 THEN
        RAISE EXCEPTION 'a rule has at most 16 params' USING ERRCODE = 'program_limit_exceeded';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT r.user_id::{{ user_id_type }}, r.scope::text, r.level::text, '
        'r.achieved_at::timestamptz, r.value::numeric, r.meta::jsonb, r.is_progress::boolean '
        'FROM (%s) AS r', p_sql)
    USING p_params[1], p_params[2], p_params[3], p_params[4], p_params[5],
          p_params[6], p_params[7], p_params[8], p_params[9], p_params[10],
          p_params[11], p_params[12], p_params[13], p_params[14], p_params[15],
          p_params[16];
END;
$function$;

-- The rows of a rule test case's SELECT (`given: {table: SELECT ...}`), under the same
-- boundary: analysts write those too. The caller names the columns (AS g (...)).
CREATE OR REPLACE FUNCTION {{ schema }}.query_rows(p_sql text) RETURNS SETOF record
LANGUAGE plpgsql SECURITY INVOKER AS $function$
BEGIN
    RETURN QUERY EXECUTE p_sql;
END;
$function$;

-- The plan of a rule's compiled SQL with these params (EXPLAIN: planned, not executed), under
-- the same boundary: a table the runner role may not read is "permission denied" here too.
CREATE OR REPLACE FUNCTION {{ schema }}.explain_rule(p_sql text, p_params text[] DEFAULT '{}')
RETURNS SETOF text
LANGUAGE plpgsql SECURITY INVOKER AS $function$
BEGIN
    IF cardinality(p_params) > 16 THEN
        RAISE EXCEPTION 'a rule has at most 16 params' USING ERRCODE = 'program_limit_exceeded';
    END IF;
    RETURN QUERY EXECUTE 'EXPLAIN ' || p_sql
    USING p_params[1], p_params[2], p_params[3], p_params[4], p_params[5],
          p_params[6], p_params[7], p_params[8], p_params[9], p_params[10],
          p_params[11], p_params[12], p_params[13], p_params[14], p_params[15],
          p_params[16];
END;
$function$;

-- What a rule could change in its session besides its rows, taken before the rule: the
-- settings plaudit and its callers depend on, and the advisory locks the session holds.
-- A rule cannot SET ROLE (above); these it could change through a function call, which
-- validate also refuses (denylist), so this is the second line, not the first.
CREATE OR REPLACE FUNCTION {{ schema }}.rule_session() RETURNS jsonb
LANGUAGE sql AS $function$
    SELECT jsonb_build_object(
        'settings', (SELECT jsonb_object_agg(s.name, current_setting(s.name))
                     FROM unnest(ARRAY[
                         'search_path', 'statement_timeout', 'lock_timeout',
                         'idle_in_transaction_session_timeout', 'application_name', 'TimeZone',
                         'DateStyle', 'IntervalStyle', 'extra_float_digits', 'bytea_output',
                         'work_mem', 'maintenance_work_mem', 'temp_buffers', 'jit',
                         'row_security', 'default_transaction_read_only',
                         'synchronous_commit', 'client_min_messages']) AS s (name)),
        'locks', (SELECT coalesce(jsonb_agg(jsonb_build_array(l.classid, l.objid, l.objsubid)),
                                  '[]')
                  FROM pg_locks AS l
                  WHERE l.pid = pg_backend_pid() AND l.locktype = 'advisory'));
$function$;

-- Undo what the rule changed: settings back to their values before it, and the session-level
-- advisory locks it took released (an advisory lock taken by a rule would make another rule,
-- or another runner, busy for as long as the session lives). Returns what it undid, for the
-- run's message; NULL when nothing.
CREATE OR REPLACE FUNCTION {{ schema }}.restore_session(p_before jsonb) RETURNS text
LANGUAGE plpgsql AS $function$
DECLARE
    v_setting record;
    v_lock record;
    v_undone text[] := '{}';
BEGIN
    FOR v_setting IN
        SELECT b.key AS name, b.value #>> '{}' AS value
        FROM jsonb_each(p_before -> 'settings') AS b
        WHERE current_setting(b.key) IS DISTINCT FROM b.value #>> '{}'
    LOOP
        PERFORM set_config(v_setting.name, v_setting.value, false);
        v_undone := v_undone || format('setting %s', v_setting.name);
    END LOOP;
    FOR v_lock IN
        -- pg_locks shows the keys as unsigned oids: back to the signed ints they were
        SELECT DISTINCT l.classid::bigint AS classid, l.objid::bigint AS objid, l.objsubid,
               l.mode = 'ShareLock' AS shared,
               (l.classid::bigint - CASE WHEN l.classid::bigint > 2147483647
                                         THEN 4294967296 ELSE 0 END)::int AS key1,
               (l.objid::bigint - CASE WHEN l.objid::bigint > 2147483647
                                       THEN 4294967296 ELSE 0 END)::int AS key2
        FROM pg_locks AS l
        WHERE l.pid = pg_backend_pid() AND l.locktype = 'advisory'
          AND NOT (p_before -> 'locks') @> jsonb_build_array(
              jsonb_build_array(l.classid, l.objid, l.objsubid))
    LOOP
        -- session-level locks are held until unlocked as often as taken; a transaction-level
        -- one cannot be unlocked (false, with a warning silenced here) and ends with the
        -- transaction anyway
        LOOP
            EXIT WHEN NOT CASE
                WHEN v_lock.objsubid = 1 AND v_lock.shared
                    THEN pg_advisory_unlock_shared((v_lock.classid << 32) | v_lock.objid)
                WHEN v_lock.objsubid = 1
                    THEN pg_advisory_unlock((v_lock.classid << 32) | v_lock.objid)
                WHEN v_lock.shared THEN pg_advisory_unlock_shared(v_lock.key1, v_lock.key2)
                ELSE pg_advisory_unlock(v_lock.key1, v_lock.key2) END;
            v_undone := v_undone || 'an advisory lock'::text;
        END LOOP;
    END LOOP;
    RETURN nullif(array_to_string(ARRAY(SELECT DISTINCT u FROM unnest(v_undone) AS u ORDER BY u), ', '), '');
END;
$function$;

-- Put the boundary in place for the configured runner role (meta.rule_role): rule_rows and
-- explain_rule owned by it and SECURITY DEFINER. Called at the end of every init (CREATE OR
-- REPLACE above makes them SECURITY INVOKER again) and by setup_runner_role.
CREATE OR REPLACE FUNCTION {{ schema }}.apply_rule_role() RETURNS text
LANGUAGE plpgsql AS $function$
DECLARE
    v_role text := (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'rule_role');
    v_function text;
BEGIN
    IF v_role IS NULL THEN
        RETURN NULL;
    END IF;
    -- the role reads what rules read of plaudit (badge(), the done and due lookups) and
    -- nothing else of it
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA {{ schema }} FROM %I', v_role);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA {{ schema }} FROM %I', v_role);
    EXECUTE format('GRANT USAGE ON SCHEMA {{ schema }} TO %I', v_role);
    EXECUTE format('GRANT SELECT ON {{ schema }}.badge, {{ schema }}.badge_level, '
                   '{{ schema }}.user_badge, {{ schema }}.user_progress TO %I', v_role);
    -- a new owner needs CREATE on the schema; it keeps the functions when CREATE goes again
    EXECUTE format('GRANT CREATE ON SCHEMA {{ schema }} TO %I', v_role);
    FOREACH v_function IN ARRAY ARRAY['{{ schema }}.rule_rows(text, text[])',
                                      '{{ schema }}.explain_rule(text, text[])',
                                      '{{ schema }}.query_rows(text)'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', v_function, v_role);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER', v_function);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_function);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_function, session_user);
    END LOOP;
    EXECUTE format('REVOKE CREATE ON SCHEMA {{ schema }} FROM %I', v_role);
    RETURN v_role;
END;
$function$;

-- `plaudit test` runs rules in a scratch schema, on temporary copies of the app tables it
-- makes: the same runner role reads them there (adopted from the real schema's meta).
CREATE OR REPLACE FUNCTION {{ schema }}.adopt_rule_role(p_role text) RETURNS text
LANGUAGE plpgsql AS $function$
BEGIN
    IF p_role IS NOT NULL THEN
        INSERT INTO {{ schema }}.meta AS m (key, value) VALUES ('rule_role', p_role)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    END IF;
    RETURN {{ schema }}.apply_rule_role();
END;
$function$;

CREATE OR REPLACE FUNCTION {{ schema }}.grant_rule_role(p_table regclass) RETURNS void
LANGUAGE plpgsql AS $function$
DECLARE
    v_role text := (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'rule_role');
BEGIN
    IF v_role IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON %s TO %I', p_table, v_role);
    END IF;
END;
$function$;

-- No plaudit function is executable by PUBLIC (a rule's role included): its owner runs
-- plaudit; other roles are granted what they need (README, "Roles").
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {{ schema }} FROM PUBLIC;
REVOKE EXECUTE ON ALL PROCEDURES IN SCHEMA {{ schema }} FROM PUBLIC;
SELECT {{ schema }}.apply_rule_role();
