{% from 'kinds/_levels.sql' import scope, next_level %}
{#-
  gauge: the query returns (user_id, value, achieved_at [, scope]): a metric computed
  elsewhere (reputation, a score, a rank), one row per user or a time series. A level is
  reached by the earliest row whose value >= its threshold; achieved_at is that row's.

  One aggregate pass: the earliest qualifying achieved_at of each level is a filtered min,
  so nothing is sorted. Progress: the value is the user's latest value (of the row with the
  latest achieved_at, the largest on a tie), looked up only for users with several rows;
  the next level is the first one above the highest value ever reached.
-#}
{% macro gauge(query, levels, has_scope) -%}
WITH src AS NOT MATERIALIZED (
{{ query }}
),
metrics AS (
    SELECT src.user_id, {{ scope(has_scope) }} AS scope, count(*) AS n,
           max(src.value)::numeric AS peak, max(src.achieved_at::timestamptz) AS last_at,
           {% for l in levels %}min(src.achieved_at::timestamptz) FILTER (WHERE src.value >= {{ l.threshold }}) AS reached_{{ loop.index }}{{ "," if not loop.last }}
           {% endfor %}
    FROM src
    WHERE src.value IS NOT NULL AND src.achieved_at IS NOT NULL
    GROUP BY 1, 2
),
users AS (
    SELECT m.*,
           CASE WHEN m.n = 1 THEN m.peak
                ELSE (SELECT max(x.value)::numeric FROM src AS x
                      WHERE x.user_id = m.user_id{% if has_scope %} AND {{ scope(true, 'x') }} = m.scope{% endif %}
                        AND x.achieved_at = m.last_at)
           END AS value
    FROM metrics AS m
)
SELECT u.user_id, u.scope, r.level, r.achieved_at, u.value, NULL::jsonb AS meta,
       false AS is_progress
FROM users AS u
CROSS JOIN LATERAL (
    VALUES {% for l in levels %}({{ l.key | sqlstring }}, u.reached_{{ loop.index }}){{ ", " if not loop.last }}{% endfor %}
) AS r (level, achieved_at)
WHERE r.achieved_at IS NOT NULL
UNION ALL
SELECT u.user_id, u.scope, {{ next_level('u.peak', levels) }} AS level,
       NULL::timestamptz AS achieved_at, u.value, NULL::jsonb AS meta, true AS is_progress
FROM users AS u
{%- endmacro %}
