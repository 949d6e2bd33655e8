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

  Incremental runs of an unscoped rule whose users come from affected() (`window` is set)
  read a batch user from their last active period on, not from their first, when what
  user_progress knows of them still holds: their current run (`carried` periods, ending in
  period `since`, no later than the batch's earliest event), and every level below their
  next level held, each achieved no later than that event. Then no row before `since` can
  matter: the batch's rows are at or after it, so they can only extend the current run or
  start new ones, and a level not yet held needs a run longer than any so far (longer than
  `carried`), whose threshold-th period is after `since`. The run found starting at `since`
  goes on from the current one; the longest run so far is at least `floor`, the threshold
  of the highest level below the next. A heavy user active every day is read for a day or
  two, not for years. Anyone else (no progress yet, a late event, a level missing below the
  next, a rule due for a backfill: `window.trusted` is false) is read in full.
-#}
{% macro streak(query, levels, has_scope, period, timezone, window=none) -%}
WITH src AS NOT MATERIALIZED (
{{ query }}
),
{{ levels_cte(levels, 'int') }},
{%- if window %}
{%- set last = period_shift("(p.expires_at AT TIME ZONE " ~ (timezone | sqlstring) ~ ")::date", "-2", period) %}
{%- set below_next = "l.threshold < coalesce(nl.threshold, 2147483647)" %}
checked AS (
    SELECT u.user_id, w.since,
           CASE WHEN w.since IS NOT NULL THEN p.value END AS carried,
           CASE WHEN w.since IS NOT NULL THEN w.floor END AS floor
    FROM (SELECT DISTINCT b.user_id FROM {{ window.batch }} AS b) AS u
    LEFT JOIN {{ window.schema }}.user_progress AS p
      ON p.user_id = u.user_id AND p.badge = {{ window.badge }} AND p.scope = ''
    LEFT JOIN levels AS nl ON nl.key = p.next_level
    CROSS JOIN LATERAL (
        SELECT CASE WHEN p.value >= 1 AND {{ window.trusted }}
                     AND (p.next_level IS NULL OR nl.key IS NOT NULL)
                     AND {{ last }} <= {{ period_start(window.batch_start, period, timezone) }}
                     AND NOT EXISTS (SELECT FROM levels AS l
                                     WHERE {{ below_next }}
                                       AND NOT {{ window.held('u.user_id', 'l.key', "''") }})
                    THEN {{ last }} END AS since,
               coalesce((SELECT max(l.threshold) FROM levels AS l WHERE {{ below_next }}), 0)
                   AS floor
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
          AND isfinite(s.occurred_at::timestamptz)
        GROUP BY 1
    ) AS a
),
{%- else %}
active AS (
    SELECT src.user_id, {{ scope(has_scope) }} AS scope,
           {{ period_start('src.occurred_at', period, timezone) }} AS period,
           min(src.occurred_at::timestamptz) AS first_at
    FROM src
    -- a time that is NULL or ±infinity falls in no period
    WHERE isfinite(src.occurred_at::timestamptz)
    GROUP BY 1, 2, 3
),
{%- endif %}
islands AS (
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
{%- if window %}
-- the run starting at `since` goes on from the current run
runs AS (
    SELECT i.user_id, i.scope,
           CASE WHEN i.first_period = c.since
                THEN {{ period_shift('i.first_period', '1 - c.carried', period) }}
                ELSE i.first_period END AS first_period,
           i.last_period,
           CASE WHEN i.first_period = c.since THEN i.length + c.carried - 1
                ELSE i.length END AS length,
           coalesce(c.floor, 0) AS floor
    FROM islands AS i
    JOIN checked AS c ON c.user_id = i.user_id
),
{%- else %}
runs AS (
    SELECT i.user_id, i.scope, i.first_period, i.last_period, i.length, 0 AS floor
    FROM islands AS i
),
{%- endif %}
-- per user: the longest run and the current one (the run with the latest period; the
-- array max picks it without sorting)
users AS (
    SELECT r.user_id, r.scope, max(r.length) AS best, max(r.last_period) AS last_period,
           (max(ARRAY[r.last_period - DATE '2000-01-03', r.length]))[2] AS current,
           max(r.floor) AS floor
    FROM runs AS r
    GROUP BY r.user_id, r.scope
),
reached AS (
    SELECT r.user_id, r.scope, l.key, l.threshold, min(r.first_period) AS first_period
    FROM runs AS r
    JOIN levels AS l ON r.length >= l.threshold AND l.threshold > r.floor
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
SELECT u.user_id, u.scope, {{ next_level('greatest(u.best, u.floor)', levels) }} AS level,
       {{ period_begins('u.last_period', 2, period, timezone) }} AS achieved_at,
       u.current::numeric AS value, NULL::jsonb AS meta, true AS is_progress
FROM users AS u
{%- endmacro %}
