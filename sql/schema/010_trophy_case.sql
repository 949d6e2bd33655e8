-- The trophy case as data (issue 14): every badge a user may see, with where they stand and
-- the badge's face (migration 0002) in their language. Rendered with {{ schema }} and
-- {{ user_id_type }} like the other schema files; re-created by every init.

-- plaudit.yaml's `categories:`, synced by configure (every deploy): in the order written.
-- p_categories: [{key, name, i18n: {locale: name}}]; NULL or [] leaves none.
CREATE OR REPLACE FUNCTION {{ schema }}.sync_categories(p_categories jsonb) RETURNS void
LANGUAGE sql AS $function$
    DELETE FROM {{ schema }}.category AS c
    WHERE c.key NOT IN (SELECT x ->> 'key'
                        FROM jsonb_array_elements(coalesce(p_categories, '[]')) AS x);
    INSERT INTO {{ schema }}.category AS c (key, position, name, i18n)
    SELECT x ->> 'key', t.i::int, x ->> 'name', coalesce(x -> 'i18n', '{}')
    FROM jsonb_array_elements(coalesce(p_categories, '[]')) WITH ORDINALITY AS t (x, i)
    ON CONFLICT (key) DO UPDATE SET
        position = excluded.position, name = excluded.name, i18n = excluded.i18n
    WHERE (c.position, c.name, c.i18n)
          IS DISTINCT FROM (excluded.position, excluded.name, excluded.i18n);
$function$;

-- A text in a locale, else p_default (the rule's own text). The locale falls back by
-- dropping subtags from its end: 'fr-CA' looks in fr-ca, then fr; 'zh-Hant-TW' in
-- zh-hant-tw, zh-hant, zh. Locales compare case-insensitively (deploy stores them
-- lower-case), '_' reads as '-' ('fr_CA', as in LANG). p_path: where the text is under the
-- locale ('{name}', '{levels,bronze,hint}'; '{}' when the locale's value is the text).
CREATE OR REPLACE FUNCTION {{ schema }}.localized(
    p_i18n jsonb,
    p_locale text,
    p_path text[],
    p_default text
) RETURNS text
LANGUAGE sql IMMUTABLE AS $function$
    SELECT coalesce((
        SELECT t.text
        FROM (SELECT string_to_array(lower(replace(p_locale, '_', '-')), '-') AS parts) AS l
        CROSS JOIN LATERAL generate_series(cardinality(l.parts), 1, -1) AS n
        CROSS JOIN LATERAL (
            SELECT p_i18n -> array_to_string(l.parts[1:n], '-') #>> p_path AS text) AS t
        WHERE t.text <> ''
        ORDER BY n DESC
        LIMIT 1), p_default);
$function$;

-- A user's trophy case: one row per listable badge, and per scope where the user holds or
-- progresses in one (a badge they have nothing of: one row, scope ''). Secret badges, and
-- disabled ones, are listed only where earned. Ordered by category (plaudit.yaml's order,
-- then uncategorized), the rule's `order:`, name.
--   status: 'unlocked' (a level is held; next_level says whether more are to come),
--           'in_progress' (none held, progress above 0) or 'locked'
--   level, level_name: the last level held (in level order); achieved_at, source: its grant's
--   next_level, next_level_name: the level to reach next; NULL once every level is held.
--     An award's levels are picked by its query, not reached: its next level is its first
--     while none is held, then none.
--   value, threshold, percent: progress to the next level, as of now (a lapsed streak reads
--     0; current_progress), percent in 0-100, rounded down; an award has no value
--   icon: the held level's, else the next level's; points: of every level held here
--   description: the held level's, else the badge's; hint: the next level's
-- Texts are in p_locale where the rule translates them (plaudit.localized), else its own.
CREATE OR REPLACE FUNCTION {{ schema }}.trophy_case(
    p_user_id {{ user_id_type }},
    p_locale text DEFAULT NULL
) RETURNS TABLE (badge text, scope text, status text, name text, category text,
                 category_name text, level text, level_name text, next_level text,
                 next_level_name text, value numeric, threshold numeric, percent int,
                 icon text, points int, description text, hint text,
                 achieved_at timestamptz, source text, secret boolean, kind text,
                 period text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
    WITH held AS (
        SELECT ub.badge, ub.scope,
               (array_agg(ub.level ORDER BY l.position DESC))[1] AS level,
               (array_agg(ub.achieved_at ORDER BY l.position DESC))[1] AS achieved_at,
               (array_agg(ub.source ORDER BY l.position DESC))[1] AS source,
               max(l.position) AS position, sum(l.points)::int AS points
        FROM {{ schema }}.user_badge AS ub
        JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
        WHERE ub.user_id = p_user_id
        GROUP BY ub.badge, ub.scope
    ),
    progress AS (
        SELECT p.badge, p.scope, p.value, p.next_level
        FROM {{ schema }}.current_progress AS p
        WHERE p.user_id = p_user_id
    ),
    listed AS (
        SELECT b.slug, b.kind, coalesce(h.scope, p.scope, '') AS scope, h.level, h.position,
               h.achieved_at, h.source, coalesce(h.points, 0) AS points, p.badge IS NOT NULL AS measured,
               p.value, p.next_level
        FROM {{ schema }}.badge AS b
        LEFT JOIN (held AS h FULL JOIN progress AS p ON p.badge = h.badge AND p.scope = h.scope)
            ON coalesce(h.badge, p.badge) = b.slug
        WHERE h.level IS NOT NULL OR b.enabled AND NOT b.secret
    ),
    stepped AS (
        SELECT s.*,
               CASE WHEN s.measured THEN s.next_level
                    WHEN s.kind = 'award' AND s.level IS NOT NULL THEN NULL
                    ELSE (SELECT l.key FROM {{ schema }}.badge_level AS l
                          WHERE l.badge = s.slug AND l.position > coalesce(s.position, 0)
                          ORDER BY l.position LIMIT 1) END AS next_key,
               -- awards (the one kind whose query picks the level) measure nothing
               CASE WHEN s.kind <> 'award' THEN coalesce(s.value, 0) END AS measure
        FROM listed AS s
    )
    SELECT s.slug, s.scope,
           CASE WHEN s.level IS NOT NULL THEN 'unlocked'
                WHEN s.measure > 0 AND s.measure <> 'NaN' THEN 'in_progress'
                ELSE 'locked' END,
           {{ schema }}.localized(b.i18n, p_locale, '{name}', b.name),
           b.category,
           {{ schema }}.localized(c.i18n, p_locale, '{}', coalesce(c.name, b.category)),
           s.level,
           -- a level named like its badge (an award's single level) takes its translated name
           {{ schema }}.localized(b.i18n, p_locale, ARRAY['levels', s.level, 'name'],
               CASE WHEN hl.name = b.name
                    THEN {{ schema }}.localized(b.i18n, p_locale, '{name}', b.name)
                    ELSE hl.name END),
           s.next_key,
           {{ schema }}.localized(b.i18n, p_locale, ARRAY['levels', s.next_key, 'name'],
               CASE WHEN nl.name = b.name
                    THEN {{ schema }}.localized(b.i18n, p_locale, '{name}', b.name)
                    ELSE nl.name END),
           s.measure,
           CASE WHEN s.measure IS NOT NULL THEN nl.threshold END,
           CASE WHEN s.next_key IS NULL THEN CASE WHEN s.level IS NOT NULL THEN 100 ELSE 0 END
                WHEN s.measure IS NULL OR nl.threshold IS NULL OR s.measure = 'NaN' THEN 0
                ELSE greatest(0, least(100, floor(s.measure * 100 / nl.threshold)))::int END,
           CASE WHEN s.level IS NOT NULL THEN hl.icon ELSE nl.icon END,
           s.points,
           coalesce(
               {{ schema }}.localized(b.i18n, p_locale,
                                      ARRAY['levels', s.level, 'description'], hl.description),
               {{ schema }}.localized(b.i18n, p_locale, '{description}',
                                      nullif(b.description, ''))),
           {{ schema }}.localized(b.i18n, p_locale, ARRAY['levels', s.next_key, 'hint'],
                                  nl.hint),
           s.achieved_at, s.source, b.secret, b.kind, b.definition ->> 'period'
    FROM stepped AS s
    JOIN {{ schema }}.badge AS b ON b.slug = s.slug
    LEFT JOIN {{ schema }}.badge_level AS hl ON hl.badge = s.slug AND hl.key = s.level
    LEFT JOIN {{ schema }}.badge_level AS nl ON nl.badge = s.slug AND nl.key = s.next_key
    LEFT JOIN {{ schema }}.category AS c ON c.key = b.category
    ORDER BY c.position NULLS LAST, b.category NULLS LAST, b.sort_order NULLS LAST, 4, s.slug,
             s.scope;
$function$;

-- as every plaudit function (008_boundary.sql): granted to the roles that need it, not
-- PUBLIC; an app's role that shows trophy cases needs EXECUTE on trophy_case only (it runs
-- as plaudit's owner, like unseen)
REVOKE EXECUTE ON FUNCTION {{ schema }}.sync_categories(jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.localized(jsonb, text, text[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.trophy_case({{ user_id_type }}, text) FROM PUBLIC;
