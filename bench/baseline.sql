{#-
  The baselines the benchmark divides by: a rule's bare analyst query, aggregated the plain
  way, with none of plaudit's work (exact dates, grants, progress, run log, locks).

  `query` is the rule's own SELECT rendered for a mode (backfill: every user; incremental:
  the users of the batch), so the baseline reads exactly the rows the rule reads. Only a
  count of the qualifying users leaves the server: like a backfill, nothing is streamed.

  count, streak: rows per user >= the lowest threshold (a streak of N periods needs at
  least N rows); sum: sum(amount); gauge: max(value); growth: two rows at least (an increase
  needs two periods); award: the rows themselves, counted.
-#}
{% macro bare(kind, query, lowest, has_scope) -%}
{%- if kind == 'award' -%}
SELECT count(*) AS users FROM (
{{ query }}
) AS src
{%- else -%}
SELECT count(*) AS users FROM (
    SELECT src.user_id
    FROM (
{{ query }}
    ) AS src
    GROUP BY src.user_id{{ ', src.scope' if has_scope }}
    HAVING {% if kind == 'sum' %}sum(src.amount) >= {{ lowest }}
           {%- elif kind == 'gauge' %}max(src.value) >= {{ lowest }}
           {%- elif kind == 'growth' %}count(*) >= 2
           {%- else %}count(*) >= {{ lowest }}{% endif %}
) AS bare
{%- endif %}
{%- endmacro %}

{#-
  A rule's full kind query (what plaudit.run_rule executes: canonical rows with exact dates
  and progress), counted instead of written: separates the cost of computing the rows from
  the cost of writing grants, progress and the run log.
-#}
{% macro rows_only(sql) -%}
SELECT count(*) AS rows FROM (
{{ sql }}
) AS kind_rows
{%- endmacro %}
