{% from 'kinds/_levels.sql' import levels_cte, scope, level_after %}
{% from 'kinds/_periods.sql' import period_start, period_shift, period_begins %}
{#-
  growth: the query returns (user_id, occurred_at [, amount] [, scope]); a period's total
  is the sum of amount (the number of rows without an amount column). The value is the
  percentage increase of a period's total over the period just before it; a period whose
  previous period totals zero (or less) is skipped. A level is reached by the earliest
  completed period whose increase >= its threshold; achieved_at is the end of that period
  (the instant the next one begins, in the rule's time zone). A period still running is
  not judged: its increase is not known until it ends.

  Increases are compared exactly (gain * 100 >= threshold * base), not through a rounded
  percentage. Progress: the value is the best increase so far (rounded to 0.01), the next
  level the first one not reached.
-#}
{% macro growth(query, levels, has_scope, has_amount, period, timezone) -%}
WITH src AS NOT MATERIALIZED (
{{ query }}
),
totals AS (
    SELECT src.user_id, {{ scope(has_scope) }} AS scope,
           {{ period_start('src.occurred_at', period, timezone) }} AS period,
           {{ 'coalesce(sum(src.amount), 0)' if has_amount else 'count(*)' }}::numeric AS total
    FROM src
    -- a time that is NULL or ±infinity falls in no period
    WHERE isfinite(src.occurred_at::timestamptz)
    GROUP BY 1, 2, 3
),
steps AS (
    SELECT cur.user_id, cur.scope, {{ period_begins('cur.period', 1, period, timezone) }} AS period_end,
           cur.total - prev.total AS gain, prev.total AS base
    FROM totals AS cur
    JOIN totals AS prev
      ON prev.user_id = cur.user_id AND prev.scope = cur.scope
     AND prev.period = {{ period_shift('cur.period', -1, period) }}
    WHERE prev.total > 0
      AND {{ period_begins('cur.period', 1, period, timezone) }} <= now()
),
{{ levels_cte(levels) }},
reached AS (
    SELECT s.user_id, s.scope, l.key, min(s.period_end) AS achieved_at
    FROM steps AS s
    JOIN levels AS l ON s.gain * 100 >= l.threshold * s.base
    GROUP BY s.user_id, s.scope, l.key
),
best AS (
    SELECT s.user_id, s.scope, round(max(s.gain * 100 / s.base), 2) AS best
    FROM steps AS s
    GROUP BY 1, 2
),
counted AS (
    SELECT r.user_id, r.scope, count(*) AS n
    FROM reached AS r
    GROUP BY 1, 2
),
users AS (
    SELECT t.user_id, t.scope, coalesce(b.best, 0) AS best, coalesce(c.n, 0) AS levels_reached
    FROM (SELECT DISTINCT x.user_id, x.scope FROM totals AS x) AS t
    LEFT JOIN best AS b ON b.user_id = t.user_id AND b.scope = t.scope
    LEFT JOIN counted AS c ON c.user_id = t.user_id AND c.scope = t.scope
)
SELECT r.user_id, r.scope, r.key AS level, r.achieved_at, u.best AS value,
       NULL::jsonb AS meta, false AS is_progress
FROM reached AS r
JOIN users AS u ON u.user_id = r.user_id AND u.scope = r.scope
UNION ALL
SELECT u.user_id, u.scope, {{ level_after('u.levels_reached', levels) }} AS level,
       NULL::timestamptz AS achieved_at, u.best AS value, NULL::jsonb AS meta,
       true AS is_progress
FROM users AS u
{%- endmacro %}
