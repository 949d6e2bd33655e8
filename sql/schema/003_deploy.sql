-- Installing one rule definition and its compiled SQL, as rendered by `plaudit deploy`.
-- p_def: {slug, name, description, kind, triggers, tags, enabled, params, timeout, revoke,
--         levels: [{key, name, threshold, points, icon, description, hint}],
--         category, secret, order, i18n, compiled: {mode: sql}, hash}
-- Returns 'created', 'changed' or 'unchanged' (by definition hash). A created rule, and a
-- changed one whose compiled SQL changed (query, levels, thresholds, params, triggers) or
-- that is enabled again, becomes due: 'new' or 'changed' until a complete backfill succeeds.
-- The face (category, secret, order, i18n, level descriptions and hints, names, icons,
-- points) is not in the compiled SQL: changing it alone never makes a rule due.

CREATE OR REPLACE FUNCTION {{ schema }}.deploy_badge(p_def jsonb)
RETURNS text
LANGUAGE plpgsql AS $function$
DECLARE
    v_slug text := p_def ->> 'slug';
    v_old_hash text;
    v_old_enabled boolean;
    v_due text;
BEGIN
    SELECT definition_hash, enabled, due INTO v_old_hash, v_old_enabled, v_due
    FROM {{ schema }}.badge WHERE slug = v_slug;
    IF v_old_hash = p_def ->> 'hash' THEN
        -- its incremental function (008_boundary.sql), if it has none yet (deployed by a
        -- plaudit without them) or one not in the boundary's state
        IF p_def -> 'compiled' ? 'incremental' AND {{ schema }}.rule_function_for(
               v_slug, p_def -> 'compiled' ->> 'incremental',
               (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'rule_role')) IS NULL THEN
            PERFORM {{ schema }}.install_rule_function(v_slug, p_def -> 'compiled' ->> 'incremental');
        END IF;
        RETURN 'unchanged';
    END IF;
    IF v_old_hash IS NULL THEN
        v_due := 'new';
    ELSIF v_due IS NULL AND (
        NOT v_old_enabled AND (p_def ->> 'enabled')::boolean
        OR (SELECT coalesce(jsonb_object_agg(c.mode, c.sql), '{}')
            FROM {{ schema }}.compiled_rule AS c WHERE c.badge = v_slug)
           IS DISTINCT FROM p_def -> 'compiled') THEN
        v_due := 'changed';
    END IF;

    INSERT INTO {{ schema }}.badge AS b
        (slug, name, description, kind, triggers, tags, enabled, params, timeout, revoke,
         definition, definition_hash, deployed_at, due, category, secret, sort_order, i18n)
    VALUES (
        v_slug, p_def ->> 'name', p_def ->> 'description', p_def ->> 'kind',
        ARRAY(SELECT jsonb_array_elements_text(p_def -> 'triggers')),
        ARRAY(SELECT jsonb_array_elements_text(p_def -> 'tags')),
        (p_def ->> 'enabled')::boolean, p_def -> 'params', p_def ->> 'timeout',
        (p_def ->> 'revoke')::boolean, p_def - 'compiled', p_def ->> 'hash', now(), v_due,
        p_def ->> 'category', coalesce((p_def ->> 'secret')::boolean, false),
        (p_def ->> 'order')::int, coalesce(p_def -> 'i18n', '{}'))
    ON CONFLICT (slug) DO UPDATE SET
        name = excluded.name, description = excluded.description, kind = excluded.kind,
        triggers = excluded.triggers, tags = excluded.tags, enabled = excluded.enabled,
        params = excluded.params, timeout = excluded.timeout, revoke = excluded.revoke,
        definition = excluded.definition, definition_hash = excluded.definition_hash,
        deployed_at = excluded.deployed_at, due = excluded.due, category = excluded.category,
        secret = excluded.secret, sort_order = excluded.sort_order, i18n = excluded.i18n;

    INSERT INTO {{ schema }}.badge_level AS l
        (badge, key, position, name, threshold, points, icon, description, hint)
    SELECT v_slug, lv ->> 'key', i::int, lv ->> 'name', (lv ->> 'threshold')::numeric,
           coalesce((lv ->> 'points')::int, 0), lv ->> 'icon', lv ->> 'description',
           lv ->> 'hint'
    FROM jsonb_array_elements(p_def -> 'levels') WITH ORDINALITY AS t (lv, i)
    ON CONFLICT (badge, key) DO UPDATE SET
        position = excluded.position, name = excluded.name, threshold = excluded.threshold,
        points = excluded.points, icon = excluded.icon, description = excluded.description,
        hint = excluded.hint;
    -- a removed level that still has grants fails here on the user_badge foreign key
{%- if citus %}
    -- (on Citus, which keeps no foreign keys from the per-user tables: docs/citus.md, here)
    IF EXISTS (SELECT 1 FROM {{ schema }}.user_badge AS ub
               WHERE ub.badge = v_slug AND ub.level <> ALL (ARRAY(
                   SELECT lv ->> 'key' FROM jsonb_array_elements(p_def -> 'levels') AS lv)))
    THEN
        RAISE EXCEPTION 'badge % has grants of a level the rule no longer has', v_slug
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    DELETE FROM {{ schema }}.suppressed_grant AS sg
    WHERE sg.badge = v_slug AND sg.level <> ALL (ARRAY(
        SELECT lv ->> 'key' FROM jsonb_array_elements(p_def -> 'levels') AS lv));
{%- endif %}
    DELETE FROM {{ schema }}.badge_level
    WHERE badge = v_slug
      AND key NOT IN (SELECT lv ->> 'key' FROM jsonb_array_elements(p_def -> 'levels') AS lv);

    DELETE FROM {{ schema }}.compiled_rule WHERE badge = v_slug;
    INSERT INTO {{ schema }}.compiled_rule (badge, mode, sql, params)
    SELECT v_slug, c.key, c.value, p_def -> 'params'
    FROM jsonb_each_text(p_def -> 'compiled') AS c;
    -- incremental runs read its rows through a function of its own (008_boundary.sql)
    PERFORM {{ schema }}.install_rule_function(v_slug, p_def -> 'compiled' ->> 'incremental');

    RETURN CASE WHEN v_old_hash IS NULL THEN 'created' ELSE 'changed' END;
END;
$function$;
