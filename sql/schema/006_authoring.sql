-- The analyst's tools: `plaudit preview` and `plaudit test`. Re-runnable (CREATE OR REPLACE).
-- Rendered with {{ schema }} like the other schema files.
--
-- Both take a rule's compiled SQL as rendered from the rule file (which need not be deployed
-- yet), bound like run_rule binds it: the params as one text array, $1. Neither writes: the caller runs
-- preview in a read-only transaction that it rolls back, and tests in a scratch schema inside
-- a transaction that it rolls back.

-- The grants a run of the rule would add, without adding them: its rows not granted yet and
-- not revoked (suppressed_grant), what run_rule inserts. A dry run (run_rule) counts them,
-- preview counts and samples them: one definition, so the two cannot disagree.
CREATE OR REPLACE FUNCTION {{ schema }}.new_grants(
    p_badge text,
    p_sql text,
    p_params text[],
    p_search_path text
) RETURNS TABLE (user_id {{ user_id_type }}, level text, scope text, achieved_at timestamptz,
                 value numeric)
LANGUAGE plpgsql AS $function$
BEGIN
{%- if citus %}
    -- On Citus (013_citus.sql): the rows, the badge's grants and its revocations read apart,
    -- then compared on the coordinator (Citus cannot join a function's rows to a distributed
    -- table, and a preview writes no staging table: it runs read-only)
    PERFORM set_config('citus.enable_repartition_joins', 'on', true);  -- as run_rule
    RETURN QUERY
    WITH r AS MATERIALIZED (
        SELECT * FROM {{ schema }}.rule_rows(p_sql, p_params, p_search_path) AS x
        WHERE NOT x.is_progress
    ),
    held AS MATERIALIZED (
        SELECT * FROM jsonb_to_recordset((
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'user_id', ub.user_id, 'level', ub.level, 'scope', ub.scope)), '[]')
            FROM {{ schema }}.user_badge AS ub WHERE ub.badge = p_badge))
        AS h (user_id {{ user_id_type }}, level text, scope text)
        UNION ALL
        SELECT * FROM jsonb_to_recordset((
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'user_id', sg.user_id, 'level', sg.level, 'scope', sg.scope)), '[]')
            FROM {{ schema }}.suppressed_grant AS sg WHERE sg.badge = p_badge))
        AS h (user_id {{ user_id_type }}, level text, scope text)
    )
    SELECT r.user_id, r.level, r.scope, r.achieved_at, r.value
    FROM r
    WHERE NOT EXISTS (SELECT 1 FROM held AS h
                      WHERE h.user_id = r.user_id AND h.level = r.level AND h.scope = r.scope);
    RETURN;
{%- endif %}
    RETURN QUERY EXECUTE format($q$
        SELECT r.user_id, r.level, r.scope, r.achieved_at, r.value
        FROM {{ schema }}.rule_rows(%1$L, $1, $2) AS r
        WHERE NOT r.is_progress
          AND NOT EXISTS (
            SELECT FROM {{ schema }}.user_badge AS ub
            WHERE ub.user_id = r.user_id AND ub.badge = %2$L
              AND ub.level = r.level AND ub.scope = r.scope)
          AND NOT EXISTS (
            SELECT FROM {{ schema }}.suppressed_grant AS sg
            WHERE sg.user_id = r.user_id AND sg.badge = %2$L
              AND sg.level = r.level AND sg.scope = r.scope)
    $q$, p_sql, p_badge)
    USING p_params, p_search_path;
END;
$function$;

-- What a backfill of the rule would do, without doing it: per level the grants it would add
-- (new_grants), and a sample of them. Returns
-- {"levels": {level: n}, "sample": [{user_id, level, scope, achieved_at, value}]}.
CREATE OR REPLACE FUNCTION {{ schema }}.preview_rule(
    p_badge text,
    p_sql text,
    p_params text[] DEFAULT '{}',
    p_sample int DEFAULT 10
) RETURNS jsonb
LANGUAGE plpgsql AS $function$
DECLARE
    v_result jsonb;
BEGIN
    WITH new AS MATERIALIZED (
        SELECT n.user_id::text AS user_id, n.level, n.scope, n.achieved_at, n.value
        FROM {{ schema }}.new_grants(p_badge, p_sql, p_params, coalesce(
            (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'rule_search_path'),
            current_setting('search_path'))) AS n
    )
    SELECT jsonb_build_object(
        'levels', (SELECT coalesce(jsonb_object_agg(x.level, x.n), '{}')
                   FROM (SELECT new.level, count(*) AS n FROM new GROUP BY new.level) AS x),
        'sample', (SELECT coalesce(jsonb_agg(s ORDER BY s.achieved_at, s.user_id, s.level,
                                             s.scope), '[]')
                   FROM (SELECT * FROM new
                         ORDER BY new.achieved_at, new.user_id, new.level, new.scope
                         LIMIT p_sample) AS s))
    INTO v_result;
    RETURN v_result;
END;
$function$;

-- (explain_rule, the plan of a rule's SQL: 008_boundary.sql, under the rule boundary)

-- A rule test case's app table: an empty temporary copy of p_table that shadows it for the
-- rest of the transaction (pg_temp comes first in the search path), filled with the case's
-- rows: p_rows, a JSON array of objects, or the rows of the table p_given (which `plaudit
-- test` fills from the case's SELECT). Columns that a row does not name take their defaults
-- (ids from identity columns) or NULL: NOT NULL is dropped on the copy so that a case gives
-- only the columns the rule reads. Returns the row count.
--
-- No argument is ever spliced into SQL text: tables are regclass (quoted by their output
-- function), columns go through quote_ident/%I, rows are bound with USING. It used to take
-- the case's SELECT as text and run it, which made it a way to run any SQL.
CREATE OR REPLACE FUNCTION {{ schema }}.test_table(
    p_table text,
    p_rows jsonb DEFAULT NULL,
    p_given regclass DEFAULT NULL
) RETURNS int
LANGUAGE plpgsql AS $function$
DECLARE
    v_source regclass := to_regclass(p_table);
    v_name text;
    v_copy regclass;
    v_column text;
    v_columns text;
    v_count int := 0;
BEGIN
    IF v_source IS NULL THEN
        RAISE EXCEPTION 'table % does not exist', p_table
            USING ERRCODE = 'undefined_table',
                  HINT = 'a test case gives rows for the app tables the rule reads';
    END IF;
    SELECT c.relname INTO v_name FROM pg_class AS c WHERE c.oid = v_source;
    EXECUTE format(
        'CREATE TEMPORARY TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED)',
        v_name, v_source);
    v_copy := format('pg_temp.%I', v_name)::regclass;
    FOR v_column IN
        SELECT a.attname FROM pg_attribute AS a
        WHERE a.attrelid = v_copy AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
          AND a.attidentity = ''
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', v_copy, v_column);
    END LOOP;

    IF p_given IS NOT NULL THEN
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO v_columns
        FROM pg_attribute AS a
        WHERE a.attrelid = p_given AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE format('INSERT INTO %1$s (%2$s) SELECT %2$s FROM %3$s', v_copy, v_columns, p_given);
        GET DIAGNOSTICS v_count = ROW_COUNT;
    ELSIF jsonb_array_length(coalesce(p_rows, '[]')) > 0 THEN
        SELECT string_agg(quote_ident(k.key), ', ' ORDER BY k.key) INTO v_columns
        FROM (SELECT DISTINCT jsonb_object_keys(r) AS key
              FROM jsonb_array_elements(p_rows) AS r) AS k;
        EXECUTE format('INSERT INTO %1$s (%2$s) SELECT %2$s FROM jsonb_populate_recordset(NULL::%1$s, $1)',
                       v_copy, v_columns)
        USING p_rows;
        GET DIAGNOSTICS v_count = ROW_COUNT;
    END IF;
    RETURN v_count;
END;
$function$;

-- (EXECUTE on these is revoked from PUBLIC with every plaudit function: 008_boundary.sql)
