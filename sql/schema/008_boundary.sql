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
-- plaudit table. What a rule can still do to its session is undone: rule_rows rolls back the
-- subtransaction the rule ran in (settings, temporary objects), and run_rule releases the
-- session advisory locks it took (rule_session / restore_session).
-- Without a runner role, they are SECURITY INVOKER: rules run as the caller.
-- Re-runnable; rendered with {{ schema }} and {{ user_id_type }} like the other files.

-- A rule's canonical rows. p_sql is a rule's compiled SQL as deployed (compiled_rule) or as
-- rendered from its file (preview, test), its params bound as one text array ($1).
-- p_search_path: where the rule's unqualified names resolve (the app's schemas).
-- The function's own search_path is pinned (SET below): PostgreSQL restores it when the
-- function returns, so a rule that changes search_path cannot redirect the unqualified names
-- of the SQL that runs after it (run_rule's), whatever it does.
CREATE OR REPLACE FUNCTION {{ schema }}.rule_rows(
    p_sql text,
    p_params text[] DEFAULT '{}',
    p_search_path text DEFAULT NULL
) RETURNS TABLE (user_id {{ user_id_type }}, scope text, level text, achieved_at timestamptz,
                 value numeric, meta jsonb, is_progress boolean)
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    -- The rule runs in a subtransaction that is then rolled back on purpose: the rows it
    -- returned stay (a function's result is not transactional), and whatever else it did to
    -- the session goes with the subtransaction: settings it changed, even with a plain SET
    -- (which a function's SET clause would not undo), temporary objects. Session advisory
    -- locks are not transactional: run_rule releases them (restore_session).
    BEGIN
        PERFORM pg_catalog.set_config('search_path', p_search_path, true)
        WHERE p_search_path IS NOT NULL;
        RETURN QUERY EXECUTE pg_catalog.format(
            'SELECT r.user_id::{{ user_id_type }}, r.scope::text, r.level::text, '
            'r.achieved_at::timestamptz, r.value::numeric, r.meta::jsonb, '
            'r.is_progress::boolean FROM (%s) AS r', p_sql)
        USING p_params;  -- one array: the rule reads ($1::text[])[n]
        RAISE EXCEPTION USING ERRCODE = 'P0P01';  -- the rollback, not an error
    EXCEPTION WHEN SQLSTATE 'P0P01' THEN
        NULL;
    END;
END;
$function$;

-- A rule's incremental rows through a function of its own (rule_function), made by deploy
-- from its compiled SQL: rule_rows with the SQL written in, not passed in. PL/pgSQL keeps the
-- plan of a static statement for the session, so a rule is planned once per session (again
-- after an ANALYZE of a table it reads: each runner batch's, so large batches are planned for
-- their size), where rule_rows's EXECUTE planned it at every run (measured at 1M users:
-- planning was half of a check). The same boundary as rule_rows: the runner role's SECURITY
-- DEFINER function when one is set (own_rule_function), the rule in a subtransaction rolled
-- back on purpose, its search_path set inside and restored when it returns. run_rule uses it
-- only while it is in that state and was made from the SQL being run (rule_function_for);
-- otherwise rule_rows runs the SQL as before.
CREATE OR REPLACE FUNCTION {{ schema }}.rule_function(p_badge text) RETURNS text
LANGUAGE sql IMMUTABLE AS $function$
    -- slugs may be longer than an identifier: named by a hash, the slug in its comment
    SELECT '{{ schema }}.rule_rows_' || left(md5(p_badge), 16);
$function$;

-- (Re)make the rule's function from its compiled incremental SQL, or drop it (p_sql NULL).
-- Called by deploy_badge (003_deploy.sql) and when a badge is removed.
CREATE OR REPLACE FUNCTION {{ schema }}.install_rule_function(p_badge text, p_sql text)
RETURNS void
LANGUAGE plpgsql AS $function$
DECLARE
    v_function text := {{ schema }}.rule_function(p_badge);
    -- a dollar quote the SQL cannot contain (deploy compiled it; this is not the check)
    v_quote text := '$rule_' || md5(coalesce(p_sql, '')) || '$';
BEGIN
{%- if citus %}
    -- on Citus a rule runs through citus_run (013_citus.sql), and function DDL after writes to
    -- distributed tables in the same transaction is refused: no per-rule functions there
    RETURN;
{%- endif %}
    EXECUTE format('DROP FUNCTION IF EXISTS %s(text[], text)', v_function);
    IF p_sql IS NULL THEN
        RETURN;
    END IF;
    IF strpos(p_sql, v_quote) > 0 THEN
        RAISE EXCEPTION 'rule %: its SQL contains %', p_badge, v_quote;
    END IF;
    -- No named parameters and no named result columns: PL/pgSQL would resolve a name in the
    -- rule's SQL that is no column of its tables (a mistake, which rule_rows reports as
    -- "column does not exist") to such a variable instead, and quietly return other rows.
    -- $1 is the params, as in rule_rows; $2 the search_path. The caller names the columns
    -- (run_rule: AS f (user_id, ...)).
    EXECUTE format($ddl$
CREATE FUNCTION %1$s(text[], text)
RETURNS SETOF record
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS %2$s
BEGIN
    BEGIN
        PERFORM pg_catalog.set_config('search_path', $2, true) WHERE $2 IS NOT NULL;
        RETURN QUERY
        SELECT r.user_id::{{ user_id_type }}, r.scope::text, r.level::text,
               r.achieved_at::timestamptz, r.value::numeric, r.meta::jsonb,
               r.is_progress::boolean
        FROM (
%3$s
        ) AS r;
        RAISE EXCEPTION USING ERRCODE = 'P0P01';  -- the rollback, not an error
    EXCEPTION WHEN SQLSTATE 'P0P01' THEN
        NULL;
    END;
END;
%2$s$ddl$, v_function, v_quote, p_sql);
    -- which rule, and the SQL it was made from (rule_function_for compares)
    EXECUTE format('COMMENT ON FUNCTION %s(text[], text) IS %L', v_function,
                   format('plaudit rule %s: %s', p_badge, md5(p_sql)));
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s(text[], text) FROM PUBLIC', v_function);
    -- check() runs as plaudit's owner, whoever deployed
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s(text[], text) TO %s', v_function,
                   (SELECT n.nspowner::regrole::text FROM pg_namespace AS n
                    WHERE n.oid = '{{ schema }}'::regnamespace));
    PERFORM {{ schema }}.own_rule_function(
        v_function || '(text[], text)',
        (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'rule_role'));
END;
$function$;

-- The boundary for a function running rule SQL: the runner role's and SECURITY DEFINER, as
-- apply_rule_role makes rule_rows (nothing without a runner role).
CREATE OR REPLACE FUNCTION {{ schema }}.own_rule_function(p_signature text, p_role text)
RETURNS void
LANGUAGE plpgsql AS $function$
BEGIN
    IF p_role IS NULL THEN
        RETURN;
    END IF;
    -- a new owner needs CREATE on the schema; it keeps the function when CREATE goes again
    EXECUTE format('GRANT CREATE ON SCHEMA {{ schema }} TO %I', p_role);
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', p_signature, p_role);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER', p_signature);
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', p_signature);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', p_signature, session_user);
    EXECUTE format('REVOKE CREATE ON SCHEMA {{ schema }} FROM %I', p_role);
END;
$function$;

-- The rule's function (its name) to run p_sql with, if there is one in the state the boundary needs:
-- made from exactly this SQL, and with a runner role (p_role), a SECURITY DEFINER function of
-- that role (without one, not SECURITY DEFINER). NULL otherwise: run_rule runs the SQL
-- through rule_rows then, whose state check_boundary checks.
-- (PL/pgSQL, not SQL: its plan is kept for the session; as a SQL function called from
-- run_rule it was planned at every call, about 1 ms of each rule run of a check)
CREATE OR REPLACE FUNCTION {{ schema }}.rule_function_for(p_badge text, p_sql text, p_role text)
RETURNS text
LANGUAGE plpgsql STABLE AS $function$
DECLARE
    v_function text := {{ schema }}.rule_function(p_badge);
BEGIN
    IF EXISTS (
        SELECT FROM pg_proc AS f
        -- the comment (obj_description, a SQL function, would be planned at every call)
        JOIN pg_description AS d
          ON d.objoid = f.oid AND d.classoid = 'pg_proc'::regclass AND d.objsubid = 0
        WHERE f.oid = to_regprocedure(v_function || '(text[], text)')
          AND d.description = format('plaudit rule %s: %s', p_badge, md5(p_sql))
          AND CASE WHEN p_role IS NULL THEN NOT f.prosecdef
                   ELSE f.prosecdef AND f.proowner = to_regrole(p_role) END) THEN
        RETURN v_function;
    END IF;
    RETURN NULL;
END;
$function$;

-- The rows of a rule test case's SELECT (`given: {table: SELECT ...}`), under the same
-- boundary: analysts write those too. The caller names the columns (AS g (...)).
CREATE OR REPLACE FUNCTION {{ schema }}.query_rows(p_sql text) RETURNS SETOF record
LANGUAGE plpgsql SECURITY INVOKER AS $function$
BEGIN
    BEGIN  -- rolled back on purpose, keeping the rows: like rule_rows
        RETURN QUERY EXECUTE p_sql;
        RAISE EXCEPTION USING ERRCODE = 'P0P01';
    EXCEPTION WHEN SQLSTATE 'P0P01' THEN
        NULL;
    END;
END;
$function$;

-- The plan of a rule's compiled SQL with these params (EXPLAIN: planned, not executed), under
-- the same boundary: a table the runner role may not read is "permission denied" here too.
CREATE OR REPLACE FUNCTION {{ schema }}.explain_rule(p_sql text, p_params text[] DEFAULT '{}')
RETURNS SETOF text
LANGUAGE plpgsql SECURITY INVOKER AS $function$
BEGIN
    -- planned, never executed: nothing of the rule runs here
    RETURN QUERY EXECUTE 'EXPLAIN ' || p_sql USING p_params;
END;
$function$;

-- What a rule could leave in its session that its subtransaction's rollback (rule_rows)
-- does not undo, taken before the rule: the advisory locks the session holds. (validate
-- refuses the functions too, the denylist; this is the second line, not the first.)
DROP FUNCTION IF EXISTS {{ schema }}.rule_session();
CREATE OR REPLACE FUNCTION {{ schema }}.rule_session() RETURNS jsonb
LANGUAGE sql AS $function$
    SELECT jsonb_build_object(
        'locks', (SELECT coalesce(jsonb_agg(jsonb_build_array(l.classid, l.objid, l.objsubid)),
                                  '[]')
                  FROM pg_locks AS l
                  WHERE l.pid = pg_backend_pid() AND l.locktype = 'advisory'));
$function$;

-- Undo what the rule left: the session-level advisory locks it took, released (an advisory lock taken by a rule would make another rule,
-- or another runner, busy for as long as the session lives). Returns what it undid, for the
-- run's message; NULL when nothing.
DROP FUNCTION IF EXISTS {{ schema }}.restore_session(jsonb);
CREATE OR REPLACE FUNCTION {{ schema }}.restore_session(p_before jsonb, p_badge text)
RETURNS text
LANGUAGE plpgsql AS $function$
DECLARE
    v_lock record;
    v_undone text[] := '{}';
    v_messages text := current_setting('client_min_messages');
BEGIN
    -- the rule's own lock is held by this transaction already, so pg_locks cannot show a
    -- session-level hold the rule added to it: release any (an unlock of the transaction's
    -- own hold fails with a warning, silenced)
    PERFORM set_config('client_min_messages', 'error', true);
    WHILE pg_advisory_unlock(hashtext('{{ schema }}'), hashtext(p_badge)) LOOP
        v_undone := v_undone || 'an advisory lock'::text;
    END LOOP;
    PERFORM set_config('client_min_messages', v_messages, true);
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
        PERFORM set_config('client_min_messages', 'error', true);
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
    PERFORM set_config('client_min_messages', v_messages, true);
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
    -- A member of the role could turn the functions it owns back into SECURITY INVOKER (or
    -- rewrite them): nobody but the user installing plaudit may be one.
    IF EXISTS (SELECT FROM pg_auth_members AS m
               JOIN pg_roles AS r ON r.oid = m.roleid
               JOIN pg_roles AS u ON u.oid = m.member
               WHERE r.rolname = v_role AND u.rolname <> session_user) THEN
        RAISE EXCEPTION 'runner role % has members besides %: %', v_role, session_user,
            (SELECT string_agg(u.rolname, ', ' ORDER BY u.rolname)
             FROM pg_auth_members AS m JOIN pg_roles AS r ON r.oid = m.roleid
             JOIN pg_roles AS u ON u.oid = m.member
             WHERE r.rolname = v_role AND u.rolname <> session_user)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('a member can switch the rule boundary off; REVOKE %I FROM them '
                                '(app sessions need EXECUTE on plaudit''s API instead: README, '
                                '"Least privilege")', v_role);
    END IF;
    -- what an earlier plaudit granted the role (write on the plaudit schema, every routine)
    EXECUTE format('REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA {{ schema }} FROM %I', v_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA {{ schema }} REVOKE ALL ON TABLES FROM %I', v_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA {{ schema }} REVOKE ALL ON SEQUENCES FROM %I', v_role);
    -- the role reads what rules read of plaudit (badge(), the done and due lookups) and
    -- nothing else of it
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA {{ schema }} FROM %I', v_role);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA {{ schema }} FROM %I', v_role);
    EXECUTE format('GRANT USAGE ON SCHEMA {{ schema }} TO %I', v_role);
    EXECUTE format('GRANT SELECT ON {{ schema }}.badge, {{ schema }}.badge_level, '
                   '{{ schema }}.user_badge, {{ schema }}.user_progress TO %I', v_role);
    -- a new owner needs CREATE on the schema; it keeps the functions when CREATE goes again
    EXECUTE format('GRANT CREATE ON SCHEMA {{ schema }} TO %I', v_role);
    -- the rules' own functions (install_rule_function) too
    FOREACH v_function IN ARRAY ARRAY['{{ schema }}.rule_rows(text, text[], text)',
                                      '{{ schema }}.explain_rule(text, text[])',
                                      '{{ schema }}.query_rows(text)'] || ARRAY(
        SELECT f.oid::regprocedure::text FROM pg_proc AS f
        WHERE f.pronamespace = '{{ schema }}'::regnamespace
          AND f.proname LIKE 'rule\_rows\_%' AND obj_description(f.oid, 'pg_proc') LIKE 'plaudit rule %')
    LOOP
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

-- Before each rule: the functions running rule SQL are still the runner role's and SECURITY
-- DEFINER. (Another member of the role could have changed that; apply_rule_role refuses
-- members, this catches what happened since.)
CREATE OR REPLACE FUNCTION {{ schema }}.check_boundary(p_role text) RETURNS void
LANGUAGE plpgsql STABLE AS $function$
BEGIN
    IF EXISTS (SELECT FROM pg_proc AS f
               WHERE f.oid IN ('{{ schema }}.rule_rows(text, text[], text)'::regprocedure,
                               '{{ schema }}.query_rows(text)'::regprocedure)
                 AND NOT (f.prosecdef AND f.proowner = to_regrole(p_role))) THEN
        RAISE EXCEPTION 'the rule boundary is not in place: plaudit.rule_rows is not a SECURITY DEFINER function of %', p_role
            USING ERRCODE = 'insufficient_privilege', HINT = 'run `plaudit init --runner-role ' || p_role || '`';
    END IF;
END;
$function$;

-- No plaudit function is executable by PUBLIC (a rule's role included): its owner runs
-- plaudit; other roles are granted what they need (README, "Roles").
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {{ schema }} FROM PUBLIC;
REVOKE EXECUTE ON ALL PROCEDURES IN SCHEMA {{ schema }} FROM PUBLIC;
SELECT {{ schema }}.apply_rule_role();
