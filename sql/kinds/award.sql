{% from 'kinds/_levels.sql' import scope %}
{#-
  award: the query returns (user_id, achieved_at [, level] [, scope] [, meta]); each row is a
  grant. Rows leading to the same grant (user, level, scope) collapse to the earliest
  achieved_at (its meta with it), so the outcome never depends on row order. Without a level
  column every row is the rule's only level. Awards have no progress.
-#}
{% macro award(query, default_level, has_level, has_scope, has_meta) -%}
WITH src AS NOT MATERIALIZED (
{{ query }}
)
SELECT DISTINCT ON (g.user_id, g.level, g.scope)
       g.user_id, g.scope, g.level, g.achieved_at, NULL::numeric AS value, g.meta,
       false AS is_progress
FROM (
    SELECT src.user_id,
           {{ scope(has_scope) }} AS scope,
           {{ 'src.level::text' if has_level else default_level | sqlstring }} AS level,
           src.achieved_at::timestamptz AS achieved_at,
           {{ 'src.meta::jsonb' if has_meta else 'NULL::jsonb' }} AS meta
    FROM src
) AS g
ORDER BY g.user_id, g.level, g.scope, g.achieved_at
{%- endmacro %}
