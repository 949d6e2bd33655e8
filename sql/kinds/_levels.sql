{#-
  Shared by the threshold kinds: the rule's levels as a relation, the scope as text, and the
  next level to reach. Level keys are names from the rule file (quoted with sqlstring) and
  thresholds are numbers checked when the rule was loaded: no value from data enters the SQL.
-#}

{#- The levels as `levels (key, threshold)`, for a WITH list. -#}
{% macro levels_cte(levels, type='numeric') -%}
levels (key, threshold) AS (
    VALUES {% for l in levels %}({{ l.key | sqlstring }}, {{ l.threshold }}::{{ type }}){{ ", " if not loop.last }}{% endfor %}
)
{%- endmacro %}

{#-
  The scope of a source row as the grant's text key. NULL and '' are the same scope ('' is
  the default), so they must group together: one grant per (user, level, scope).
-#}
{% macro scope(has_scope, alias='src') -%}
{{ "coalesce(" ~ alias ~ ".scope::text, '')" if has_scope else "''" }}
{%- endmacro %}

{#- The lowest level whose threshold `value` has not reached; NULL once all are reached. -#}
{% macro next_level(value, levels) -%}
CASE {% for l in levels %}WHEN {{ value }} < {{ l.threshold }} THEN {{ l.key | sqlstring }} {% endfor %}END
{%- endmacro %}

{#- The level after the first `n` (levels reached are always a prefix); NULL after the last. -#}
{% macro level_after(n, levels) -%}
CASE {{ n }} {% for l in levels %}WHEN {{ loop.index0 }} THEN {{ l.key | sqlstring }} {% endfor %}END
{%- endmacro %}

{#-
  The progress rows of users carried forward (count, sum, gauge: `carried (user_id, value,
  through_at)`): their next level (`level`, SQL; NULL for a done user), and the time they
  are counted up to.
-#}
{% macro carried_progress(level='NULL') -%}
SELECT c.user_id, '' AS scope, {{ level }} AS level, NULL::timestamptz AS achieved_at,
       c.value::numeric AS value, jsonb_build_object('through', c.through_at) AS meta,
       true AS is_progress
FROM carried AS c
{%- endmacro %}
