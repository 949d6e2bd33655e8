{#-
  The second baseline of the backfill section: the SQL a competent author writes by hand,
  without plaudit, for the same output as a rule's backfill. Same grants (user_id, level,
  scope, achieved_at: the exact time each threshold was crossed) and the same progress rows
  (value, next level), upserted with plain INSERT ... ON CONFLICT DO UPDATE into
  bench.user_badge and bench.user_progress: copies of plaudit's tables with the same
  columns, keys, indexes and foreign keys (queries.sql, handwritten_tables), so that the
  write costs are comparable.

  One statement per rule: the rows are computed once, the plain way (window functions over
  the whole source, sorted by user and time), into a small materialized CTE of one row per
  user and scope; both upserts read it. Generated per kind from the rule's definition (its
  rendered query, levels, scope, period and time zone), never written per rule. It is an
  independent implementation of each kind's semantics (sql/kinds/*.sql, docs/rules.md): the
  benchmark checks it returns what plaudit wrote, EXCEPT both ways (backfill.py).

  Arguments: `rule` (its slug and levels), `query` (its SELECT rendered for a backfill),
  `has_scope`, `has_amount` (growth), the `period` and `timezone` of streak and growth.
  Grants are inserted already seen, as plaudit's backfill inserts grants of the past (out of
  the unseen-grants index). Award rules have none: their query already is the grants (the
  bare query is the hand-written one).
-#}

{#- NULL and '' are the same scope, as plaudit's grants key them. -#}
{% macro scope(has_scope, alias='s') -%}
{{ "coalesce(" ~ alias ~ ".scope::text, '')" if has_scope else "''::text" }}
{%- endmacro %}

{#- The lowest level whose threshold `value` has not reached; NULL once all are. -#}
{% macro next_level(value, levels) -%}
CASE {% for l in levels %}WHEN {{ value }} < {{ l.threshold }} THEN {{ l.key | sqlstring }} {% endfor %}END
{%- endmacro %}

{#- A local date truncated to the rule's period (ISO weeks start on Monday). -#}
{% macro period_of(ts, period, timezone) -%}
date_trunc('{{ period }}', ({{ ts }})::timestamptz AT TIME ZONE {{ timezone | sqlstring }})::date
{%- endmacro %}

{#-
  The two upserts from `users (user_id, scope, value, next_level[, expires_at], reached_1..n)`:
  a grant per level whose reached_i is set, and the progress row.
-#}
{% macro upserts(rule, value='u.value', expires=false) -%}
granted AS (
    INSERT INTO bench.user_badge AS ub (user_id, badge, level, scope, achieved_at, value, seen_at)
    SELECT u.user_id, {{ rule.slug | sqlstring }}, r.level, u.scope, r.achieved_at, {{ value }}, now()
    FROM users AS u
    CROSS JOIN LATERAL (
        VALUES {% for l in rule.levels %}({{ l.key | sqlstring }}, u.reached_{{ loop.index }}){{ ", " if not loop.last }}{% endfor %}
    ) AS r (level, achieved_at)
    WHERE r.achieved_at IS NOT NULL
    ON CONFLICT (user_id, badge, level, scope) DO UPDATE
        SET achieved_at = excluded.achieved_at, value = excluded.value
        WHERE excluded.achieved_at < ub.achieved_at
)
INSERT INTO bench.user_progress AS up (user_id, badge, scope, value, next_level{{ ", expires_at" if expires }})
SELECT u.user_id, {{ rule.slug | sqlstring }}, u.scope, u.value, u.next_level{{ ", u.expires_at" if expires }}
FROM users AS u
ON CONFLICT (user_id, badge, scope) DO UPDATE
    SET value = excluded.value, next_level = excluded.next_level,
        {{- " expires_at = excluded.expires_at," if expires }} updated_at = now()
{%- endmacro %}

{#-
  count: number the rows of each user in time order; the threshold-th row dates the level
  (rows tied in time give the same date whichever comes first), the last row holds the count.
-#}
{% macro count(rule, query, has_scope) -%}
WITH src AS (
{{ query }}
),
numbered AS (
    SELECT s.user_id, {{ scope(has_scope) }} AS scope, s.occurred_at::timestamptz AS occurred_at,
           row_number() OVER w AS n, count(*) OVER (PARTITION BY s.user_id, {{ scope(has_scope) }}) AS total
    FROM src AS s
    WINDOW w AS (PARTITION BY s.user_id, {{ scope(has_scope) }} ORDER BY s.occurred_at)
),
users AS MATERIALIZED (
    SELECT m.user_id, m.scope, max(m.total)::numeric AS value,
           {{ next_level('max(m.total)', rule.levels) }} AS next_level,
{%- for l in rule.levels %}
           min(m.occurred_at) FILTER (WHERE m.n = {{ l.threshold }}) AS reached_{{ loop.index }}{{ "," if not loop.last }}
           {%- endfor %}
    FROM numbered AS m
    WHERE m.n = m.total OR m.n IN ({{ rule.levels | map(attribute='threshold') | map('int') | join(', ') }})
    GROUP BY m.user_id, m.scope
),
{{ upserts(rule) }}
{%- endmacro %}

{#-
  sum: the running sum in time order, rows tied in time added together (the default RANGE
  frame); a level is dated by the first row whose running sum reaches it (and stays reached
  if a negative amount takes the sum back below). The next level is above the peak.
-#}
{% macro sum(rule, query, has_scope) -%}
WITH src AS (
{{ query }}
),
running AS (
    SELECT s.user_id, {{ scope(has_scope) }} AS scope, s.occurred_at::timestamptz AS occurred_at,
           s.amount,
           sum(s.amount) OVER (PARTITION BY s.user_id, {{ scope(has_scope) }} ORDER BY s.occurred_at) AS running
    FROM src AS s
),
users AS MATERIALIZED (
    SELECT r.user_id, r.scope, coalesce(sum(r.amount), 0)::numeric AS value,
           {{ next_level('greatest(coalesce(sum(r.amount), 0), max(r.running) FILTER (WHERE r.occurred_at IS NOT NULL))', rule.levels) }} AS next_level,
{%- for l in rule.levels %}
           min(r.occurred_at) FILTER (WHERE r.running >= {{ l.threshold }}) AS reached_{{ loop.index }}{{ "," if not loop.last }}
           {%- endfor %}
    FROM running AS r
    GROUP BY r.user_id, r.scope
),
{{ upserts(rule) }}
{%- endmacro %}

{#-
  gauge: a level is dated by the earliest row with a value at or above it; progress holds
  the latest value (the largest on a tie in time), the next level is above the highest.
-#}
{% macro gauge(rule, query, has_scope) -%}
WITH src AS (
{{ query }}
),
users AS MATERIALIZED (
    SELECT s.user_id, {{ scope(has_scope) }} AS scope,
           ((array_agg(s.value ORDER BY s.achieved_at DESC, s.value DESC))[1])::numeric AS value,
           {{ next_level('max(s.value)', rule.levels) }} AS next_level,
{%- for l in rule.levels %}
           min(s.achieved_at::timestamptz) FILTER (WHERE s.value >= {{ l.threshold }}) AS reached_{{ loop.index }}{{ "," if not loop.last }}
           {%- endfor %}
    FROM src AS s
    WHERE s.value IS NOT NULL AND s.achieved_at IS NOT NULL
    GROUP BY 1, 2
),
{{ upserts(rule) }}
{%- endmacro %}

{#-
  streak: the active periods of each user (with their first activity), gaps and islands
  (period - row_number() periods is constant along a run), each period's position in its
  run; a level is dated by the first activity of the earliest period at that position.
  Progress: the run holding the latest period, alive until the start of the second period
  after it; the next level is above the longest run.
-#}
{% macro streak(rule, query, has_scope, period, timezone) -%}
WITH src AS (
{{ query }}
),
active AS (
    SELECT s.user_id, {{ scope(has_scope) }} AS scope, {{ period_of('s.occurred_at', period, timezone) }} AS period,
           min(s.occurred_at::timestamptz) AS first_at
    FROM src AS s
    WHERE isfinite(s.occurred_at::timestamptz)
    GROUP BY 1, 2, 3
),
islands AS (
    SELECT a.user_id, a.scope, a.period, a.first_at,
           a.period - row_number() OVER (PARTITION BY a.user_id, a.scope ORDER BY a.period)
                      * interval '1 {{ period }}' AS island
    FROM active AS a
),
positioned AS (
    SELECT i.user_id, i.scope, i.period, i.first_at,
           row_number() OVER (PARTITION BY i.user_id, i.scope, i.island ORDER BY i.period) AS pos
    FROM islands AS i
),
users AS MATERIALIZED (
    SELECT p.user_id, p.scope, max(p.pos) AS best,
           ((array_agg(p.pos ORDER BY p.period DESC))[1])::numeric AS value,
           {{ next_level('max(p.pos)', rule.levels) }} AS next_level,
           (max(p.period) + 2 * interval '1 {{ period }}') AT TIME ZONE {{ timezone | sqlstring }} AS expires_at,
{%- for l in rule.levels %}
           min(p.first_at) FILTER (WHERE p.pos = {{ l.threshold }}) AS reached_{{ loop.index }}{{ "," if not loop.last }}
           {%- endfor %}
    FROM positioned AS p
    GROUP BY p.user_id, p.scope
),
{{ upserts(rule, value='u.best', expires=true) }}
{%- endmacro %}

{#-
  growth: each period's total, the previous period's beside it (lag), judged only when it is
  the period just before, totals more than zero, and the later period has ended; a level is
  dated by the end of the earliest period whose increase (compared exactly) reaches it.
  Progress: the best increase rounded to 0.01, the next level the first not reached.
-#}
{% macro growth(rule, query, has_scope, has_amount, period, timezone) -%}
WITH src AS (
{{ query }}
),
totals AS (
    SELECT s.user_id, {{ scope(has_scope) }} AS scope, {{ period_of('s.occurred_at', period, timezone) }} AS period,
           {{ 'coalesce(sum(s.amount), 0)' if has_amount else 'count(*)' }}::numeric AS total
    FROM src AS s
    WHERE isfinite(s.occurred_at::timestamptz)
    GROUP BY 1, 2, 3
),
steps AS (
    SELECT t.user_id, t.scope, t.total - lag(t.total) OVER w AS gain, lag(t.total) OVER w AS base,
           (t.period + interval '1 {{ period }}') AT TIME ZONE {{ timezone | sqlstring }} AS period_end,
           lag(t.period) OVER w = t.period - interval '1 {{ period }}'
               AND lag(t.total) OVER w > 0
               AND (t.period + interval '1 {{ period }}') AT TIME ZONE {{ timezone | sqlstring }} <= now() AS judged
    FROM totals AS t
    WINDOW w AS (PARTITION BY t.user_id, t.scope ORDER BY t.period)
),
users AS MATERIALIZED (
    SELECT x.*,
           CASE {% for l in rule.levels %}WHEN x.reached_{{ loop.index }} IS NULL THEN {{ l.key | sqlstring }} {% endfor %}END AS next_level
    FROM (
        SELECT s.user_id, s.scope,
               coalesce(round(max(CASE WHEN s.judged THEN s.gain * 100 / s.base END), 2), 0) AS value,
{%- for l in rule.levels %}
               min(s.period_end) FILTER (WHERE s.judged AND s.gain * 100 >= {{ l.threshold }} * s.base) AS reached_{{ loop.index }}{{ "," if not loop.last }}
               {%- endfor %}
        FROM steps AS s
        GROUP BY s.user_id, s.scope
    ) AS x
),
{{ upserts(rule) }}
{%- endmacro %}
