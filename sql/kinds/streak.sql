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
{% macro streak(query, levels, has_scope, period, timezone, window=none) -%}
WITH src AS NOT MATERIALIZED (
{{ query }}
),
{%- if window %}
{#-
  Incremental runs of an unscoped rule whose users come from affected(): a batch user who
  is done with the rule (every level held, each achieved no later than the batch's earliest
  event) cannot gain a grant from it; only their current run changes. If that run (length
  `carried`, per user_progress) ended in a period no later than the batch's earliest event,
  the user is read from that period on: nothing earlier can touch the run. A heavy user
  active every day is then read for a day or two, not for years. If the window shows the
  run going on from that period, its length is carried + the periods added; a new run after
  a gap counts alone.
-#}
{%- set last = period_shift("(p.expires_at AT TIME ZONE " ~ (timezone | sqlstring) ~ ")::date", "-2", period) %}
checked AS (
    SELECT u.user_id, w.since, CASE WHEN w.since IS NOT NULL THEN p.value END AS carried
    FROM (SELECT DISTINCT b.user_id FROM {{ window.batch }} AS b) AS u
    LEFT JOIN {{ window.schema }}.user_progress AS p
      ON p.user_id = u.user_id AND p.badge = {{ window.badge }} AND p.scope = ''
    CROSS JOIN LATERAL (
        SELECT CASE WHEN p.value >= 1
                     AND {{ last }} <= {{ period_start(window.batch_start, period, timezone) }}
                     AND {{ window.held('u.user_id') }} >= {{ levels | length }}
                    THEN {{ last }} END AS since
    ) AS w
),
active AS (
    SELECT c.user_id, ''::text AS scope, a.period, a.first_at
    FROM checked AS c
    CROSS JOIN LATERAL (
        SELECT {{ period_start('s.occurred_at', period, timezone) }} AS period,
               min(s.occurred_at::timestamptz) AS first_at
        FROM src AS s
        WHERE s.user_id = c.user_id
          AND s.occurred_at >= coalesce({{ period_begins('c.since', 0, period, timezone) }}, '-infinity')
        GROUP BY 1
    ) AS a
),
{%- else %}
active AS (
    SELECT src.user_id, {{ scope(has_scope) }} AS scope,
           {{ period_start('src.occurred_at', period, timezone) }} AS period,
           min(src.occurred_at::timestamptz) AS first_at
    FROM src
    WHERE src.occurred_at IS NOT NULL
    GROUP BY 1, 2, 3
),
{%- endif %}
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
           (max(ARRAY[r.last_period - DATE '2000-01-03', r.length]))[2] AS current{% if window %},
           (max(ARRAY[r.last_period - DATE '2000-01-03', r.first_period - DATE '2000-01-03']))[2]
               AS current_first{% endif %}
    FROM runs AS r
    GROUP BY r.user_id, r.scope
),
{{ levels_cte(levels, 'int') }},
reached AS (
    SELECT r.user_id, r.scope, l.key, l.threshold, min(r.first_period) AS first_period
    FROM runs AS r
    JOIN levels AS l ON r.length >= l.threshold
    WHERE r.length >= {{ levels[0].threshold }}
    {%- if window %}
      AND r.user_id NOT IN (SELECT c.user_id FROM checked AS c WHERE c.since IS NOT NULL)
    {%- endif %}
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
{%- if window %}
SELECT u.user_id, u.scope,
       CASE WHEN c.since IS NULL THEN {{ next_level('u.best', levels) }} END AS level,
       {{ period_begins('u.last_period', 2, period, timezone) }} AS achieved_at,
       (CASE WHEN u.current_first = c.since - DATE '2000-01-03' THEN c.carried + u.current - 1
             ELSE u.current END)::numeric AS value,
       NULL::jsonb AS meta, true AS is_progress
FROM users AS u
JOIN checked AS c ON c.user_id = u.user_id
{%- else %}
SELECT u.user_id, u.scope, {{ next_level('u.best', levels) }} AS level,
       {{ period_begins('u.last_period', 2, period, timezone) }} AS achieved_at,
       u.current::numeric AS value, NULL::jsonb AS meta, true AS is_progress
FROM users AS u
{%- endif %}
{%- endmacro %}
