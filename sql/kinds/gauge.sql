{% from 'kinds/_levels.sql' import scope, next_level, carried_progress %}
{#-
  gauge: the query returns (user_id, value, achieved_at [, scope]): a metric computed
  elsewhere (reputation, a score, a rank), one row per user or a time series. A level is
  reached by the earliest row whose value >= its threshold; achieved_at is that row's.

  One aggregate pass: the earliest qualifying achieved_at of each level is a filtered min,
  so nothing is sorted. Progress: the value is the user's latest value (of the row with the
  latest achieved_at, the largest on a tie), looked up only for users with several rows;
  the next level is the first one above the highest value ever reached; meta holds the time
  of the latest row ({"through": ...}). Users done with the rule (`carry` is set) are carried
  forward: the value of their latest row after `through_at`, if any, else the value in
  user_progress.
-#}
{% macro gauge(query, levels, has_scope, carry=none) -%}
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
{%- if carry %},
every AS NOT MATERIALIZED (
{{ carry.query }}
),
carried AS (
    SELECT p.user_id, coalesce(n.value, p.value) AS value,
           coalesce(n.through_at, p.through_at) AS through_at
    FROM {{ carry.progress }} AS p
    LEFT JOIN LATERAL (
        SELECT s.value::numeric AS value, s.achieved_at::timestamptz AS through_at
        FROM every AS s
        WHERE s.user_id = p.user_id AND s.achieved_at > p.through_at AND s.value IS NOT NULL
        ORDER BY s.achieved_at DESC, s.value DESC
        LIMIT 1
    ) AS n ON true
)
{%- endif %}
SELECT u.user_id, u.scope, r.level, r.achieved_at, u.value, NULL::jsonb AS meta,
       false AS is_progress
FROM users AS u
CROSS JOIN LATERAL (
    VALUES {% for l in levels %}({{ l.key | sqlstring }}, u.reached_{{ loop.index }}){{ ", " if not loop.last }}{% endfor %}
) AS r (level, achieved_at)
WHERE r.achieved_at IS NOT NULL
UNION ALL
SELECT u.user_id, u.scope, {{ next_level('u.peak', levels) }} AS level,
       NULL::timestamptz AS achieved_at, u.value, jsonb_build_object('through', u.last_at) AS meta,
       true AS is_progress
FROM users AS u
{%- if carry %}
UNION ALL
{{ carried_progress() }}
{%- endif %}
{%- endmacro %}
