-- Grants beyond what rules add: revocation (`revoke: true` rules, `plaudit revoke`), manual
-- awards (`plaudit award`), their audit log, progress as of now (streaks lapse without an
-- event) and the order composite rules run in. Re-runnable: IF NOT EXISTS, CREATE OR REPLACE.
-- Rendered with {{ schema }} and {{ user_id_type }} like the other schema files.

-- Progress as a reader should see it now: a streak whose lapse time has passed is 0, even
-- if no event or run has happened since. The trophy case and applications read this view.
CREATE OR REPLACE VIEW {{ schema }}.current_progress AS
SELECT p.user_id, p.badge, p.scope,
       CASE WHEN p.expires_at <= now() THEN 0 ELSE p.value END AS value,
       p.next_level, p.expires_at, p.updated_at
FROM {{ schema }}.user_progress AS p;

-- The order rules run in, for every runner: composite rules read other badges' grants
-- through badge('slug'), recorded by deploy as definition.depends_on, so a rule runs after
-- every deployed rule it reads. Ordering by (depth, slug) runs dependencies first and is one
-- total order: the order every runner takes rule locks in (plaudit.run_batch walks it).
CREATE OR REPLACE VIEW {{ schema }}.badge_run_order AS
WITH RECURSIVE edge AS (
    SELECT b.slug, d.dependency
    FROM {{ schema }}.badge AS b
    CROSS JOIN LATERAL jsonb_array_elements_text(
        coalesce(b.definition -> 'depends_on', '[]')) AS d (dependency)
    JOIN {{ schema }}.badge AS dep ON dep.slug = d.dependency
),
walk (slug, depth) AS (
    SELECT b.slug, 0 FROM {{ schema }}.badge AS b
    UNION ALL
    -- deploy refuses cycles; the depth bound only keeps a hand-edited definition finite
    SELECT e.slug, w.depth + 1
    FROM walk AS w
    JOIN edge AS e ON e.dependency = w.slug
    WHERE w.depth < 64
)
SELECT w.slug, max(w.depth) AS depth
FROM walk AS w
GROUP BY w.slug;

-- `revoke: true`: remove the rule grants of `p_badge` that the rule's compiled SQL no longer
-- returns (manual grants are never touched), log them, and count them on the run. Called by
-- run_rule after the grants of a complete (unfiltered) backfill, in the same transaction.
-- Like the backfill's grants, its revocations are news only when announced (p_announce):
-- then they go to the outbox (012_outbox.sql), while a webhook is configured.
CREATE OR REPLACE FUNCTION {{ schema }}.revoke_stale(
    p_badge text,
    p_sql text,
    p_params text[],
    p_run_id bigint,
    p_announce boolean DEFAULT false
) RETURNS int
LANGUAGE plpgsql AS $function$
DECLARE
    v_revoked int;
BEGIN
{%- if citus %}
    -- on Citus, in statements Citus can run (013_citus.sql)
    v_revoked := {{ schema }}.citus_revoke_stale(p_badge, p_sql, p_params, p_run_id, p_announce);
{%- else %}
    EXECUTE format($q$
        WITH r AS MATERIALIZED (SELECT * FROM {{ schema }}.rule_rows(%1$L, $1, $2)),
        gone AS (
            DELETE FROM {{ schema }}.user_badge AS ub
            WHERE ub.badge = %2$L AND ub.source = 'rule'
              AND NOT EXISTS (
                  SELECT FROM r
                  WHERE NOT r.is_progress AND r.user_id = ub.user_id
                    AND r.level = ub.level AND r.scope = ub.scope)
            RETURNING ub.user_id, ub.level, ub.scope, ub.achieved_at
        ),
        logged AS (
            INSERT INTO {{ schema }}.grant_log
                (user_id, badge, level, scope, action, source, reason, achieved_at, run_id)
            SELECT g.user_id, %2$L, g.level, g.scope, 'revoke', 'rule',
                   'no longer granted by the rule (revoke: true)', g.achieved_at, %3$L::bigint
            FROM gone AS g
            RETURNING 1
        ),
        outboxed AS (
            INSERT INTO {{ schema }}.outbox (user_id, action, badge, level, scope, position, notice)
            SELECT g.user_id, 'revoke', %2$L, g.level, g.scope, l.position,
                   {{ schema }}.grant_notice(g.user_id, %2$L, g.level, l.name, g.scope,
                                             g.achieved_at, l.icon, l.points)::jsonb
            FROM gone AS g
            JOIN {{ schema }}.badge_level AS l ON l.badge = %2$L AND l.key = g.level
            WHERE %4$L::boolean AND EXISTS (SELECT FROM {{ schema }}.webhook)
            RETURNING 1
        )
        SELECT count(*) FROM logged
    $q$, p_sql, p_badge, p_run_id, p_announce)
    INTO v_revoked
    USING p_params, coalesce(
        (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'rule_search_path'),
        current_setting('search_path'));
{%- endif %}
    UPDATE {{ schema }}.run AS r SET revoked = v_revoked WHERE r.run_id = p_run_id;
    RETURN v_revoked;
END;
$function$;

-- `deploy --force`: delete a badge's grants (of one level, or all when p_level is NULL), each
-- written to the log with the reason. Returns how many.
CREATE OR REPLACE FUNCTION {{ schema }}.delete_grants(p_badge text, p_level text, p_reason text)
RETURNS int
LANGUAGE plpgsql AS $function$
DECLARE
    v_count int;
BEGIN
    -- PL/pgSQL, not SQL: Citus plans no LANGUAGE sql function reading its tables
        WITH deleted AS (
            DELETE FROM {{ schema }}.user_badge AS ub
            WHERE ub.badge = p_badge AND (p_level IS NULL OR ub.level = p_level)
            RETURNING ub.user_id, ub.badge, ub.level, ub.scope, ub.source, ub.achieved_at
        ), logged AS (
            INSERT INTO {{ schema }}.grant_log
                (user_id, badge, level, scope, action, source, reason, achieved_at)
            SELECT d.user_id, d.badge, d.level, d.scope, 'revoke', d.source, p_reason, d.achieved_at
            FROM deleted AS d
            RETURNING 1
        )
        SELECT count(*)::int INTO v_count FROM logged;
    RETURN v_count;
END;
$function$;

-- The level a manual award or revocation names: p_level, or the badge's only level.
-- NULL with p_any_level when no level is named (revoke: every level).
CREATE OR REPLACE FUNCTION {{ schema }}.manual_level(
    p_badge text,
    p_level text,
    p_any_level boolean DEFAULT false
) RETURNS text
LANGUAGE plpgsql STABLE AS $function$
DECLARE
    v_levels text[];
BEGIN
    SELECT array_agg(l.key ORDER BY l.position) INTO v_levels
    FROM {{ schema }}.badge_level AS l
    WHERE l.badge = p_badge;
    IF v_levels IS NULL THEN
        RAISE EXCEPTION 'no deployed badge %', quote_literal(p_badge)
            USING ERRCODE = 'undefined_object', HINT = 'run `plaudit deploy`';
    END IF;
    IF p_level IS NULL THEN
        IF p_any_level OR cardinality(v_levels) = 1 THEN
            RETURN CASE WHEN p_any_level THEN NULL ELSE v_levels[1] END;
        END IF;
        RAISE EXCEPTION 'badge % has several levels (%): name one with --level',
            quote_literal(p_badge), array_to_string(v_levels, ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT p_level = ANY (v_levels) THEN
        RAISE EXCEPTION 'badge % has no level % (its levels: %)',
            quote_literal(p_badge), quote_literal(p_level), array_to_string(v_levels, ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_level;
END;
$function$;

-- A grant added or removed outside a rule run (award, revoke) is an event for the rules that
-- read that badge: they re-check the user now, in the caller's transaction, in run order
-- (plaudit.run_batch, each rule waiting for its lock like a runner's batch does).
-- p_events: [{user_id, occurred_at, level, scope}], occurred_at being the grant's date (a
-- revoked grant's old date, so that no shortcut trusts what it removed).
CREATE OR REPLACE FUNCTION {{ schema }}.recheck_readers(p_badge text, p_events jsonb)
RETURNS void
LANGUAGE plpgsql AS $function$
BEGIN
    IF jsonb_array_length(p_events) = 0 OR NOT EXISTS (
        SELECT FROM {{ schema }}.badge AS d
        WHERE d.enabled AND coalesce(d.definition -> 'depends_on', '[]') ? p_badge) THEN
        RETURN;
    END IF;
    PERFORM {{ schema }}.batch_reset();
    INSERT INTO pg_temp.plaudit_batch (event_id, type, user_id, occurred_at, payload)
    SELECT NULL, 'badge:' || p_badge, x.user_id, x.occurred_at,
           jsonb_build_object('level', x.level, 'scope', x.scope)
    FROM jsonb_to_recordset(p_events)
        AS x (user_id {{ user_id_type }}, occurred_at timestamptz, level text, scope text);
    PERFORM FROM {{ schema }}.run_batch();  -- which empties the batch
END;
$function$;

-- `plaudit award`: grant a badge by hand (source 'manual', the reason in meta and the log).
-- A grant already held (by a rule or by hand) is left as it is: outcome 'held'. A new manual
-- grant is news: unseen and notified like an incremental grant (and written to the outbox,
-- 012_outbox.sql, while a webhook is configured). Rules never move, revoke
-- or overwrite a manual grant. An award lifts a revocation of that grant (suppressed_grant),
-- whether or not the grant was held, and re-checks the rules that read the badge.
CREATE OR REPLACE FUNCTION {{ schema }}.award_badge(
    p_user_id {{ user_id_type }},
    p_badge text,
    p_level text DEFAULT NULL,
    p_scope text DEFAULT '',
    p_reason text DEFAULT NULL,
    p_achieved_at timestamptz DEFAULT NULL
) RETURNS TABLE (level text, scope text, outcome text, source text, achieved_at timestamptz)
LANGUAGE plpgsql AS $function$
DECLARE
    v_level text := {{ schema }}.manual_level(p_badge, p_level);
    v_scope text := coalesce(p_scope, '');
    v_at timestamptz := coalesce(p_achieved_at, now());
    v_notified bigint;
    v_channel text := coalesce(
        (SELECT m.value FROM {{ schema }}.meta AS m WHERE m.key = 'notify_channel'),
        '{{ defaults.notify_channel }}');
BEGIN
    IF coalesce(btrim(p_reason), '') = '' THEN
        RAISE EXCEPTION 'a manual grant needs a reason' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM {{ schema }}.suppressed_grant AS sg
    WHERE sg.user_id = p_user_id AND sg.badge = p_badge AND sg.level = v_level
      AND sg.scope = v_scope;
    INSERT INTO {{ schema }}.user_badge AS ub
        (user_id, badge, level, scope, achieved_at, meta, source)
    VALUES (p_user_id, p_badge, v_level, v_scope, v_at,
            jsonb_build_object('reason', p_reason, 'by', session_user), 'manual')
    ON CONFLICT ON CONSTRAINT user_badge_pkey DO NOTHING;
    IF FOUND THEN
        INSERT INTO {{ schema }}.grant_log
            (user_id, badge, level, scope, action, source, reason, achieved_at)
        VALUES (p_user_id, p_badge, v_level, v_scope, 'award', 'manual', p_reason, v_at);
        WITH announced AS MATERIALIZED (
            SELECT l.position, {{ schema }}.grant_notice(
                p_user_id, p_badge, v_level, l.name, v_scope, v_at, l.icon, l.points) AS notice
            FROM {{ schema }}.badge_level AS l
            WHERE l.badge = p_badge AND l.key = v_level
        ),
        outboxed AS (
            INSERT INTO {{ schema }}.outbox (user_id, action, badge, level, scope, position, notice)
            SELECT p_user_id, 'grant', p_badge, v_level, v_scope, a.position, a.notice::jsonb
            FROM announced AS a
            WHERE EXISTS (SELECT FROM {{ schema }}.webhook)
        ),
        notified AS MATERIALIZED (
            SELECT pg_notify(v_channel, a.notice) FROM announced AS a
        )
        SELECT count(*) INTO v_notified FROM notified;
        PERFORM {{ schema }}.recheck_readers(p_badge, jsonb_build_array(jsonb_build_object(
            'user_id', p_user_id, 'occurred_at', v_at, 'level', v_level, 'scope', v_scope)));
        RETURN QUERY SELECT v_level, v_scope, 'awarded'::text, 'manual'::text, v_at;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT ub.level, ub.scope, 'held'::text, ub.source, ub.achieved_at
    FROM {{ schema }}.user_badge AS ub
    WHERE ub.user_id = p_user_id AND ub.badge = p_badge AND ub.level = v_level
      AND ub.scope = v_scope;
END;
$function$;

-- `plaudit revoke`: remove a user's grants of a badge (one level, or all when p_level is
-- NULL; one scope, or all when p_scope is NULL), manual or by a rule, and log each with the
-- reason. A revocation is a decision: each removed grant is recorded in suppressed_grant, so
-- no rule run grants it again until `plaudit award` lifts it; the rules that read the badge
-- re-check the user. A revocation is news: it goes to the outbox (012_outbox.sql) while a
-- webhook is configured.
CREATE OR REPLACE FUNCTION {{ schema }}.revoke_badge(
    p_user_id {{ user_id_type }},
    p_badge text,
    p_level text DEFAULT NULL,
    p_scope text DEFAULT NULL,
    p_reason text DEFAULT NULL
) RETURNS TABLE (level text, scope text, source text, achieved_at timestamptz)
LANGUAGE plpgsql AS $function$
DECLARE
    v_level text := {{ schema }}.manual_level(p_badge, p_level, true);
    v_gone jsonb;
BEGIN
    IF coalesce(btrim(p_reason), '') = '' THEN
        RAISE EXCEPTION 'revoking a grant needs a reason' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH gone AS (
        DELETE FROM {{ schema }}.user_badge AS ub
        WHERE ub.user_id = p_user_id AND ub.badge = p_badge
          AND (v_level IS NULL OR ub.level = v_level)
          AND (p_scope IS NULL OR ub.scope = p_scope)
        RETURNING ub.level, ub.scope, ub.source, ub.achieved_at
    ),
    logged AS (
        INSERT INTO {{ schema }}.grant_log
            (user_id, badge, level, scope, action, source, reason, achieved_at)
        SELECT p_user_id, p_badge, g.level, g.scope, 'revoke', g.source, p_reason, g.achieved_at
        FROM gone AS g
        RETURNING 1
    ),
    suppressed AS (
        INSERT INTO {{ schema }}.suppressed_grant AS sg (user_id, badge, level, scope, reason)
        SELECT p_user_id, p_badge, g.level, g.scope, p_reason
        FROM gone AS g
        ON CONFLICT ON CONSTRAINT suppressed_grant_pkey DO UPDATE
            SET reason = excluded.reason, revoked_by = excluded.revoked_by,
                revoked_at = excluded.revoked_at
        RETURNING 1
    ),
    outboxed AS (
        INSERT INTO {{ schema }}.outbox (user_id, action, badge, level, scope, position, notice)
        SELECT p_user_id, 'revoke', p_badge, g.level, g.scope, l.position,
               {{ schema }}.grant_notice(p_user_id, p_badge, g.level, l.name, g.scope,
                                         g.achieved_at, l.icon, l.points)::jsonb
        FROM gone AS g
        JOIN {{ schema }}.badge_level AS l ON l.badge = p_badge AND l.key = g.level
        WHERE EXISTS (SELECT FROM {{ schema }}.webhook)
        RETURNING 1
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'user_id', p_user_id, 'occurred_at', g.achieved_at, 'level', g.level,
               'scope', g.scope, 'source', g.source)), '[]')
    INTO v_gone
    FROM gone AS g;
    PERFORM {{ schema }}.recheck_readers(p_badge, v_gone);
    RETURN QUERY
    SELECT g.level, g.scope, g.source, g.occurred_at
    FROM jsonb_to_recordset(v_gone) AS g (level text, scope text, source text, occurred_at timestamptz)
    JOIN {{ schema }}.badge_level AS l ON l.badge = p_badge AND l.key = g.level
    ORDER BY l.position, g.scope;
END;
$function$;
