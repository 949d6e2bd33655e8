{% from 'kinds/_levels.sql' import levels_cte, scope, next_level %}
{% from 'kinds/_periods.sql' import period_start, period_number, period_shift, period_begins %}
{#-
  streak: the query returns (user_id, occurred_at [, scope]); a streak is a run of
  consecutive periods (days, ISO weeks or calendar months in the rule's time zone) with at
  least one row each. The value is the longest run. A level is reached by the *earliest*
  run that grows to its threshold: achieved_at is the first activity in that run's
  threshold-th period (not the longest run's, and never the end of the run).

  One aggregate pass turns the source into active periods per user (carrying each period's
  first activity, so no lookup is needed for the date); only that much smaller set is
  numbered to find runs (gaps and islands).

  Progress: the value is the current run (the one with the latest period) and achieved_at
  carries when it lapses: the start of the second period after its last one. A run whose
  last period is this period or the previous one is alive; `current_progress` shows 0
  once the lapse time has passed, without any new event or run.
-#}
{% macro streak(query, levels, has_scope, period, timezone) -%}
WITH src AS NOT MATERIALIZED (
{{ query }}
),
active AS (
    SELECT src.user_id, {{ scope(has_scope) }} AS scope,
           {{ period_start('src.occurred_at', period, timezone) }} AS period,
           min(src.occurred_at::timestamptz) AS first_at
    FROM src
    WHERE src.occurred_at IS NOT NULL
    GROUP BY 1, 2, 3
),
runs AS (
    SELECT a.user_id, a.scope, min(a.period) AS first_period, max(a.period) AS last_period,
           count(*) AS length
    FROM (
        SELECT act.user_id, act.scope, act.period,
               {{ period_number('act.period', period) }}
               - row_number() OVER (PARTITION BY act.user_id, act.scope ORDER BY act.period) AS run
        FROM active AS act
    ) AS a
    GROUP BY a.user_id, a.scope, a.run
),
-- per user: the longest run and the current one (the run with the latest period; the
-- array max picks it without sorting)
users AS (
    SELECT r.user_id, r.scope, max(r.length) AS best, max(r.last_period) AS last_period,
           (max(ARRAY[r.last_period - DATE '2000-01-03', r.length]))[2] AS current
    FROM runs AS r
    GROUP BY r.user_id, r.scope
),
{{ levels_cte(levels, 'int') }},
reached AS (
    SELECT r.user_id, r.scope, l.key, l.threshold, min(r.first_period) AS first_period
    FROM runs AS r
    JOIN levels AS l ON r.length >= l.threshold
    WHERE r.length >= {{ levels[0].threshold }}
    GROUP BY r.user_id, r.scope, l.key, l.threshold
)
SELECT re.user_id, re.scope, re.key AS level, a.first_at AS achieved_at,
       u.best::numeric AS value, NULL::jsonb AS meta, false AS is_progress
FROM reached AS re
JOIN active AS a
  ON a.user_id = re.user_id AND a.scope = re.scope
 AND a.period = {{ period_shift('re.first_period', 're.threshold - 1', period) }}
JOIN users AS u ON u.user_id = re.user_id AND u.scope = re.scope
UNION ALL
SELECT u.user_id, u.scope, {{ next_level('u.best', levels) }} AS level,
       {{ period_begins('u.last_period', 2, period, timezone) }} AS achieved_at,
       u.current::numeric AS value, NULL::jsonb AS meta, true AS is_progress
FROM users AS u
{%- endmacro %}
