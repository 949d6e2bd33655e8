{% from 'kinds/_levels.sql' import levels_cte, scope, next_level, carried_progress %}
{#-
  count: the query returns (user_id, occurred_at [, scope]); the value is the number of rows
  per (user, scope). A level is reached when value >= threshold; achieved_at is the
  occurred_at of the threshold-th row (ties in occurred_at give the same date whatever their
  order).

  Exact dates without sorting the source: count per user first (one aggregate pass), then,
  only for users who crossed a threshold, read their first rows up to the highest threshold
  crossed, numbered, through one correlated lookup per user that the planner turns into an
  index range scan on (user column, time column); each level takes its threshold-th row.
  The source is a NOT MATERIALIZED CTE so both uses are inlined and the user_id predicate
  of the lookup reaches the analyst's table. A threshold of 1 needs no lookup: the first row's
  occurred_at is the minimum, taken in the aggregate pass; with a first level at 1 (Zeeguu's
  1/10/50...) most users cross only it, and an index probe per user cost more than the whole
  aggregate (bench/: 810k probes at 1M users).

  Incremental runs (`held` is set) look dates up only for the levels a user crossed and did
  not hold before the batch's earliest event: a held level's date is at or before every
  batch row, which cannot move it, so a user crossing nothing new is not read twice.

  Anchored users (`carry` is set: progress counting the source up to a time before the
  batch, every level below its next one held since before the batch; sql/helpers.sql,
  `anchored`), done users among them, are left out of `query` by affected(); they are read
  from their progress row on instead: the value in user_progress (`base`, every row up to
  its `through_at`) plus the rows after it, read through `carry.query` (the query for every
  batch user) one index range per user. A level crossed since is dated by the same rows:
  its threshold-th row is the (threshold - base)-th after `through_at` (rows tied at
  `through_at` are all in `base`, the later ones all after it). `carry.progress` holds their
  progress rows.

  On Citus (`citus`), the dates come from a window over each user's rows instead of the
  lateral lookup with a LIMIT per user, which Citus cannot run shard by shard (nor at all over
  an inlined CTE): row_number() partitioned by user is computed where the user's rows are, so
  the rule's statement is pushed down to the workers when its source tables are co-located
  (docs/citus.md). It sorts every source row, which the lookup avoids on one server.

  Output: canonical rows (user_id, scope, level, achieved_at, value, meta, is_progress);
  progress rows carry the next level to reach (NULL once all are reached), and in meta the
  time of the latest row counted ({"through": ...}).
-#}
{% macro count(query, levels, has_scope, held=none, carry=none, citus=false) -%}
{%- set first_free = levels[0].threshold == 1 %}
{%- set looked_up = levels[1:] if first_free else levels %}
WITH src AS NOT MATERIALIZED (
{{ query }}
),
{#- read twice (levels, progress): on Citus inlined, so that each shard computes it in the
    pushed-down statement, rather than materialized as a subplan through the coordinator #}
totals AS {% if citus %}NOT MATERIALIZED {% endif %}(
    -- NULL and '' are the same scope: they must count together (one grant per scope)
    SELECT src.user_id, {{ scope(has_scope) }} AS scope,
           count(*) AS value, max(src.occurred_at::timestamptz) AS through_at
           {%- if first_free %}, min(src.occurred_at::timestamptz) AS first_at{% endif %}
    FROM src
    GROUP BY 1, 2
),
{%- if carry %}
every AS NOT MATERIALIZED (
{{ carry.query }}
),
carried AS (
    SELECT p.user_id, p.value AS base, p.through_at AS since, p.value + n.value AS value,
           coalesce(n.through_at, p.through_at) AS through_at
    FROM {{ carry.progress }} AS p
    CROSS JOIN LATERAL (
        SELECT count(*) AS value, max(s.occurred_at::timestamptz) AS through_at
        FROM every AS s
        WHERE s.user_id = p.user_id AND s.occurred_at > p.through_at
    ) AS n
),
{%- endif %}
{{ levels_cte(levels, 'bigint') }}
{%- if first_free %}
SELECT t.user_id, coalesce(t.scope::text, '') AS scope, {{ levels[0].key | sqlstring }} AS level,
       t.first_at AS achieved_at, t.value::numeric AS value, NULL::jsonb AS meta,
       false AS is_progress
FROM totals AS t
{%- if looked_up %}
UNION ALL
{%- endif %}
{%- endif %}
{%- if looked_up and citus %}
SELECT hit.user_id, hit.scope, l.key AS level, hit.occurred_at::timestamptz AS achieved_at,
       hit.value::numeric AS value, NULL::jsonb AS meta, false AS is_progress
FROM (
    SELECT s.user_id, {{ scope(has_scope, 's') }} AS scope, s.occurred_at,
           row_number() OVER w AS n, count(*) OVER (PARTITION BY s.user_id, {{ scope(has_scope, 's') }}) AS value
    FROM src AS s
    WINDOW w AS (PARTITION BY s.user_id, {{ scope(has_scope, 's') }} ORDER BY s.occurred_at)
) AS hit
JOIN levels AS l ON l.threshold = hit.n{% if first_free %} AND l.threshold > 1{% endif %}
{%- if held %}
WHERE NOT {{ held('hit.user_id', 'l.key', 'hit.scope') }}
{%- endif %}
{%- elif looked_up %}
SELECT t.user_id, coalesce(t.scope::text, '') AS scope, l.key AS level,
       hit.occurred_at::timestamptz AS achieved_at, t.value::numeric AS value,
       NULL::jsonb AS meta, false AS is_progress
{%- if held %}
FROM (
    SELECT t.user_id, t.scope, t.value, max(l.threshold) AS upto
    FROM totals AS t
    JOIN levels AS l ON l.threshold <= t.value{% if first_free %} AND l.threshold > 1{% endif %}
    WHERE NOT {{ held('t.user_id', 'l.key', 't.scope') }}
    GROUP BY 1, 2, 3
) AS t
{%- else %}
FROM totals AS t
{%- endif %}
CROSS JOIN LATERAL (
    SELECT s.occurred_at, row_number() OVER (ORDER BY s.occurred_at) AS n
    FROM src AS s
    WHERE s.user_id = t.user_id{% if has_scope %} AND {{ scope(true, 's') }} = t.scope{% endif %}
    ORDER BY s.occurred_at
    -- the highest threshold this user crossed{{ " and did not hold" if held }}
    LIMIT {% if held %}t.upto{% else %}CASE {% for l in levels | reverse %}WHEN t.value >= {{ l.threshold }} THEN {{ l.threshold }} {% endfor %}END{% endif %}
) AS hit
JOIN levels AS l ON l.threshold = hit.n{% if first_free %} AND l.threshold > 1{% endif %}
{%- if not held %}
WHERE t.value >= {{ looked_up[0].threshold }}
{%- endif %}
{%- endif %}
UNION ALL
SELECT t.user_id, coalesce(t.scope::text, '') AS scope,
       {{ next_level('t.value', levels) }} AS level,
       NULL::timestamptz AS achieved_at, t.value::numeric AS value,
       jsonb_build_object('through', t.through_at) AS meta, true AS is_progress
FROM totals AS t
{%- if carry %}
UNION ALL
-- the levels an anchored user crossed after `since`, each at its threshold-th row
SELECT c.user_id, '' AS scope, l.key AS level, hit.occurred_at::timestamptz AS achieved_at,
       c.value::numeric AS value, NULL::jsonb AS meta, false AS is_progress
FROM carried AS c
CROSS JOIN LATERAL (
    SELECT s.occurred_at, c.base + row_number() OVER (ORDER BY s.occurred_at) AS n
    FROM every AS s
    WHERE s.user_id = c.user_id AND s.occurred_at > c.since
    ORDER BY s.occurred_at
    -- up to the highest threshold crossed
    LIMIT greatest(CASE {% for l in levels | reverse %}WHEN c.value >= {{ l.threshold }} THEN {{ l.threshold }} {% endfor %}ELSE 0 END - c.base, 0)
) AS hit
JOIN levels AS l ON l.threshold = hit.n
WHERE EXISTS (SELECT FROM levels AS x WHERE x.threshold > c.base AND x.threshold <= c.value)
UNION ALL
{{ carried_progress(next_level('c.value', levels)) }}
{%- endif %}
{%- endmacro %}
