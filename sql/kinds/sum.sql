{% from 'kinds/_levels.sql' import levels_cte, scope, next_level, carried_progress %}
{#-
  sum: the query returns (user_id, occurred_at, amount [, scope]); the value is the sum of
  amount per (user, scope). A level is reached when the running sum, in occurred_at order,
  first reaches its threshold; achieved_at is the occurred_at of that row. Rows sharing an
  occurred_at are added together, so ties (and their row order) cannot change the answer,
  even with negative amounts.

  Exact dates without sorting the source: total per user first (one aggregate pass); the
  running sum is then computed only for users whose total crossed the lowest threshold,
  each through a correlated range scan on (user column, time column) in time order. Users
  with a negative amount are included too: their running sum may have peaked above their
  total, and a level once reached stays reached.

  Progress: the value is the current total; the next level is the first one above the peak
  of the running sum; meta holds the time of the latest row summed ({"through": ...}).
  Anchored users (`carry` is set; done users among them) are read from their progress row
  on, like count's: the total in user_progress (`base`) plus the amounts after its
  `through_at`. The levels they cross are found on the running sum of those rows, started
  at `base`: every level from the row's next one (`goal`) up is above the running sum's
  earlier peak, so the first new step reaching its threshold is its date, and the levels
  below `goal` are held. The next level is the first one above both the new peak and the
  threshold below `goal` (the old peak is at least that).
-#}
{#-
  The steps of one user's running sum (in occurred_at order, rows at one time added
  together) that rise above every earlier step: the rows a level can be reached on.
  `source` is read as x, filtered by `where` (the user, and what else); `base` is added to
  the running sum (an anchored user's value, carried: see below).
-#}
{% macro new_highs(source, where, base='') -%}
        SELECT r.occurred_at, r.running, r.before
        FROM (
            SELECT q.occurred_at, q.running,
                   max(q.running) OVER (ORDER BY q.occurred_at
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
            FROM (
                SELECT x.occurred_at::timestamptz AS occurred_at,
                       {{ base }}sum(sum(x.amount)) OVER (ORDER BY x.occurred_at) AS running
                FROM {{ source }} AS x
                WHERE {{ where }}
                GROUP BY x.occurred_at
            ) AS q
        ) AS r
        WHERE r.before IS NULL OR r.running > r.before
{%- endmacro %}

{% macro sum(query, levels, has_scope, carry=none, citus=false) -%}
WITH src AS NOT MATERIALIZED (
{{ query }}
),
{#- read twice (levels, progress): on Citus inlined, so that each shard computes it in the
    pushed-down statement, rather than materialized as a subplan through the coordinator #}
totals AS {% if citus %}NOT MATERIALIZED {% endif %}(
    SELECT src.user_id, {{ scope(has_scope) }} AS scope,
           coalesce(sum(src.amount), 0)::numeric AS value,
           coalesce(bool_or(src.amount < 0), false) AS dips,
           max(src.occurred_at::timestamptz) AS through_at
    FROM src
    GROUP BY 1, 2
),
{{ levels_cte(levels) }},
{%- if carry %}
every AS NOT MATERIALIZED (
{{ carry.query }}
),
carried AS (
    SELECT p.user_id, p.value AS base, p.through_at AS since, nl.threshold AS goal,
           (SELECT max(l.threshold) FROM levels AS l
            WHERE l.threshold < coalesce(nl.threshold, 'Infinity')) AS floor,
           p.value + n.value AS value, n.dips, coalesce(n.through_at, p.through_at) AS through_at
    FROM {{ carry.progress }} AS p
    LEFT JOIN levels AS nl ON nl.key = p.next_level
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(s.amount), 0)::numeric AS value,
               coalesce(bool_or(s.amount < 0), false) AS dips,
               max(s.occurred_at::timestamptz) AS through_at
        FROM every AS s
        WHERE s.user_id = p.user_id AND s.occurred_at > p.through_at
    ) AS n
),
-- the new highs of an anchored user's running sum after `since`, for users it may lift to
-- their next level
carried_steps AS (
    SELECT c.user_id, c.goal, c.value, s.occurred_at, s.running, s.before
    FROM carried AS c
    CROSS JOIN LATERAL (
{{ new_highs('every', 'x.user_id = c.user_id AND x.occurred_at > c.since', 'c.base + ') }}
    ) AS s
    WHERE c.goal IS NOT NULL AND (c.value >= c.goal OR c.dips)
),
{%- endif %}
-- the new highs of each candidate's running sum: a level is reached by the step that lifts
-- the running sum to its threshold for the first time (above every earlier step)
{%- if citus %}
-- (on Citus: the same steps from windows partitioned by user, which Citus runs shard by
-- shard, instead of a lateral subquery per user, which it cannot: docs/citus.md; read
-- twice, inlined like totals)
steps AS NOT MATERIALIZED (
    SELECT t.user_id, t.scope, t.value, r.occurred_at, r.running, r.before
    FROM (
        SELECT q.user_id, q.scope, q.occurred_at, q.running,
               max(q.running) OVER (PARTITION BY q.user_id, q.scope ORDER BY q.occurred_at
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
        FROM (
            SELECT x.user_id, {{ scope(has_scope, 'x') }} AS scope,
                   x.occurred_at::timestamptz AS occurred_at,
                   sum(sum(x.amount)) OVER (PARTITION BY x.user_id, {{ scope(has_scope, 'x') }}
                                            ORDER BY x.occurred_at) AS running
            FROM src AS x
            WHERE x.occurred_at IS NOT NULL
            GROUP BY 1, 2, x.occurred_at
        ) AS q
    ) AS r
    JOIN totals AS t ON t.user_id = r.user_id AND t.scope = r.scope
    WHERE (r.before IS NULL OR r.running > r.before)
      AND (t.value >= {{ levels[0].threshold }} OR t.dips)
),
{%- else %}
steps AS (
    SELECT t.user_id, t.scope, t.value, s.occurred_at, s.running, s.before
    FROM totals AS t
    CROSS JOIN LATERAL (
{{ new_highs('src', 'x.user_id = t.user_id' ~ (' AND ' ~ scope(true, 'x') ~ ' = t.scope' if has_scope else '') ~ ' AND x.occurred_at IS NOT NULL') }}
    ) AS s
    WHERE t.value >= {{ levels[0].threshold }} OR t.dips
),
{%- endif %}
peaks AS (
    SELECT s.user_id, s.scope, max(s.running) AS peak
    FROM steps AS s
    GROUP BY 1, 2
)
SELECT s.user_id, s.scope, l.key AS level, s.occurred_at AS achieved_at,
       s.value, NULL::jsonb AS meta, false AS is_progress
FROM steps AS s
JOIN levels AS l
  ON l.threshold <= s.running AND (s.before IS NULL OR l.threshold > s.before)
UNION ALL
SELECT t.user_id, t.scope, {{ next_level('greatest(t.value, p.peak)', levels) }} AS level,
       NULL::timestamptz AS achieved_at, t.value, jsonb_build_object('through', t.through_at) AS meta,
       true AS is_progress
FROM totals AS t
LEFT JOIN peaks AS p ON p.user_id = t.user_id AND p.scope = t.scope
{%- if carry %}
UNION ALL
SELECT s.user_id, '' AS scope, l.key AS level, s.occurred_at AS achieved_at,
       s.value, NULL::jsonb AS meta, false AS is_progress
FROM carried_steps AS s
JOIN levels AS l
  ON l.threshold >= s.goal AND l.threshold <= s.running
 AND (s.before IS NULL OR l.threshold > s.before)
UNION ALL
{{ carried_progress(next_level(
    'greatest(c.value, c.floor, (SELECT max(s.running) FROM carried_steps AS s WHERE s.user_id = c.user_id))',
    levels)) }}
{%- endif %}
{%- endmacro %}
