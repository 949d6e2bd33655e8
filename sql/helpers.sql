{#-
  The SQL of the template helpers a rule's query calls (affected(), unfinished(), filter(),
  param(), batch, badge()) and of what render.py adds around a kind macro in incremental
  runs (the done-user shortcuts, the carried progress, the clearing of stale progress).
  sqlgen/render.py calls these macros; no SQL is written in Python.

  `r` describes the rule being rendered (render._target): `r.slug`, `r.triggers` (the event
  types it runs on, badge:<slug> included), `r.schema`, `r.batch` (the batch table of an
  incremental run), `r.levels` (how many levels it has) and `r.level_keys` (their keys, in
  order). Slugs, level keys and event types are names from rule files, quoted with
  sqlstring; columns are the template's own SQL.

  Most helpers render to one line, as they sit inside the analyst's query: a Jinja comment
  opened at the end of a line and closed at the start of the next is a line continuation,
  so the output is the same one line whichever way the source is wrapped.
-#}

{#- The batch's events of the rule's types that are for it: every rule's, or deferred for it
    alone (event.rule, 004_events.sql). `alias` qualifies the columns. -#}
{% macro for_rule(r, alias='') -%}
{%- set c = alias ~ '.' if alias else '' -%}
{{ c }}type IN ({{ r.triggers | map('sqlstring') | join(', ') }}) {#
#}AND ({{ c }}rule IS NULL OR {{ c }}rule = {{ r.slug | sqlstring }})
{%- endmacro %}

{#- `batch` in a template: the relation of this run's events. -#}
{% macro batch(r) -%}
(SELECT event_id, type, user_id, occurred_at, payload {#
#}FROM {{ r.batch }} WHERE {{ for_rule(r) }})
{%- endmacro %}

{#- The batch's users (the rule's events only). -#}
{% macro batch_users(r) -%}
SELECT plaudit_b.user_id FROM {{ r.batch }} AS plaudit_b WHERE {{ for_rule(r, 'plaudit_b') }}
{%- endmacro %}

{#- Whether incremental shortcuts may trust the rule's grants and progress, i.e. the rule is
    not due (new or changed since its last complete backfill: 003_deploy.sql). One lookup per
    run (an InitPlan); an undeployed rule is not trusted. -#}
{% macro trusted(r) -%}
coalesce((SELECT plaudit_due.due IS NULL FROM {{ r.schema }}.badge AS plaudit_due {#
#}WHERE plaudit_due.slug = {{ r.slug | sqlstring }}), false)
{%- endmacro %}

{#- The time of the batch's earliest event among the rule's triggers. -#}
{% macro batch_start(r) -%}
(SELECT min(plaudit_first.occurred_at) FROM {{ r.batch }} AS plaudit_first {#
#}WHERE {{ for_rule(r, 'plaudit_first') }})
{%- endmacro %}

{#- How many of the rule's levels the user `column` holds by the rule (unscoped; a manual
    grant is not the rule's verdict), achieved no later than the batch's earliest event. All
    of them: the user is done with the rule. -#}
{% macro held_before_batch(r, column) -%}
(SELECT count(*) FROM {{ r.schema }}.user_badge AS plaudit_done {#
#}WHERE plaudit_done.user_id = {{ column }} {#
#}AND plaudit_done.badge = {{ r.slug | sqlstring }} AND plaudit_done.scope = '' {#
#}AND plaudit_done.source = 'rule' {#
#}AND plaudit_done.achieved_at <= {{ batch_start(r) }})
{%- endmacro %}

{#- The user holds this level of the rule in this scope, achieved no later than the batch's
    earliest event (so no row of the batch can move its date), and the rule is not due (its
    grants were computed by its current SQL). -#}
{% macro held_level(r, user, level, scope) -%}
({{ trusted(r) }} AND EXISTS (SELECT FROM {{ r.schema }}.user_badge AS plaudit_held {#
#}WHERE plaudit_held.user_id = {{ user }} AND plaudit_held.badge = {{ r.slug | sqlstring }} {#
#}AND plaudit_held.level = {{ level }} AND plaudit_held.scope = {{ scope }} {#
#}AND plaudit_held.achieved_at <= {{ batch_start(r) }}))
{%- endmacro %}

{#- The user `column` is done with the rule: it is not due, the user holds every level, each
    achieved no later than the batch's earliest event, and (kinds that carry progress) their
    progress counts the source up to a time before that event. Such a user cannot gain a
    grant nor an earlier date from the batch (an event adds rows dated at or after it), and
    their progress is carried forward from `through_at`. The progress is a scalar lookup, not
    EXISTS: PostgreSQL would hash an EXISTS over every progress row of the badge (measured:
    130 ms a run at 100k users) instead of probing the key. -#}
{% macro done(r, column, carries) -%}
({{ trusted(r) }} AND {{ held_before_batch(r, column) }} = {{ r.levels }}
{%- if carries %} AND (SELECT plaudit_through.through_at FROM {{ r.schema }}.user_progress {#
#}AS plaudit_through WHERE plaudit_through.user_id = {{ column }} {#
#}AND plaudit_through.badge = {{ r.slug | sqlstring }} {#
#}AND plaudit_through.scope = '') < {{ batch_start(r) }}
{%- endif %})
{%- endmacro %}

{#- The time of the user `user`'s earliest event in the batch among the rule's triggers: a
    user's own bound, not the batch's (`batch_start`), so that a user read up to a time
    after another user's earliest event (a queue drained in batches) is still anchored. -#}
{% macro user_batch_start(r, user) -%}
(SELECT min(plaudit_first.occurred_at) FROM {{ r.batch }} AS plaudit_first {#
#}WHERE plaudit_first.user_id = {{ user }} AND {{ for_rule(r, 'plaudit_first') }})
{%- endmacro %}

{#- The user `column` is anchored (kinds that anchor progress: count, sum): the rule is not
    due, their progress row counts the source up to a time before the user's earliest event
    in the batch (`through_at`), and they hold every level below the progress row's next
    level, each achieved no later than that event. No row at or before `through_at` can then
    be missing from the value (a row arriving later comes with an event of its user dated at
    its time, in this batch or a later one, which reads the user in full), so the value goes
    on from the row: the user's rows after `through_at` are all the batch can add, and the
    levels they cross are found among them. A done user is an anchored one with no level left
    (`r.level_keys[:0]` are the levels below the first; all of them below none). Never NULL:
    `affected()` and `carried_users` split the batch's users by it. -#}
{% macro anchored(r, column) -%}
coalesce(({{ trusted(r) }} AND (SELECT plaudit_anchor.through_at < {{ user_batch_start(r, 'plaudit_anchor.user_id') }} {#
#}AND (SELECT count(*) FROM {{ r.schema }}.user_badge AS plaudit_below {#
#}WHERE plaudit_below.user_id = plaudit_anchor.user_id {#
#}AND plaudit_below.badge = {{ r.slug | sqlstring }} AND plaudit_below.scope = '' {#
#}AND plaudit_below.source = 'rule' {#
#}AND plaudit_below.achieved_at <= {{ user_batch_start(r, 'plaudit_anchor.user_id') }} {#
#}AND plaudit_below.level = ANY ({{ below_next(r, 'plaudit_anchor.next_level') }})) {#
#}= cardinality({{ below_next(r, 'plaudit_anchor.next_level') }}) {#
#}FROM {{ r.schema }}.user_progress AS plaudit_anchor {#
#}WHERE plaudit_anchor.user_id = {{ column }} {#
#}AND plaudit_anchor.badge = {{ r.slug | sqlstring }} AND plaudit_anchor.scope = '')), false)
{%- endmacro %}

{#- The keys of the levels below the level `next` (a progress row's next_level): all of them
    when it is NULL (every level reached), NULL for a key the rule does not have. -#}
{% macro below_next(r, next) -%}
CASE {% for key in r.level_keys %}WHEN {{ next }} = {{ key | sqlstring }} THEN {#
#}ARRAY[{{ r.level_keys[:loop.index0] | map('sqlstring') | join(', ') }}]::text[] {% endfor %}{#
#}WHEN {{ next }} IS NULL THEN ARRAY[{{ r.level_keys | map('sqlstring') | join(', ') }}]::text[] END
{%- endmacro %}

{#- affected(column) in an incremental run: the batch's users; with `skip_done`, less the ones
    done with the rule (an award's are left out; the others' progress is carried forward),
    or, for kinds that anchor progress, less the anchored ones. Those are unnested from an
    array (computed once, an InitPlan), which PostgreSQL takes for a hundred users, so it
    probes the source's user index for them; it took the plain IN (subquery) for half the
    batch's users (the done and anchored tests are opaque to it) and hashed the whole source
    table. Measured at 100k users, a batch of 1,000 events, rule SQL alone: meaning_builder
    with 43 users left to read 178 ms scanning 562k comments, 14 ms probing them. (Not
    `= ANY (ARRAY(...))`, which is estimated alike: a lateral lookup adding its own user
    equality probes the whole array for each user, all_rounder ran for minutes on a batch of
    5,000.) Without `skip_done` (the carried users' query among others) IN. -#}
{% macro affected(r, column, skip_done, carries, anchors=false) -%}
{%- if skip_done -%}
{{ column }} IN (SELECT unnest(ARRAY({{ batch_users(r) }} AND NOT {#
#}{{ anchored(r, 'plaudit_b.user_id') if anchors else done(r, 'plaudit_b.user_id', carries) }})))
{%- else -%}
{{ column }} IN ({{ batch_users(r) }})
{%- endif %}
{%- endmacro %}

{#- A param's positional placeholder, cast to its declared type. -#}
{% macro placeholder(position, type) -%}
($1::text[])[{{ position }}]::{{ type }}
{%- endmacro %}

{#- filter(column, name): no value given for the param means no filter. -#}
{% macro filter(column, value) -%}
({{ value }} IS NULL OR {{ column }} = {{ value }})
{%- endmacro %}

{#- badge(slug): another badge's grants, for composite rules. -#}
{% macro badge(schema, slug) -%}
(SELECT ub.user_id, ub.badge, ub.level, l.position AS level_position, l.points, {#
#}ub.scope, ub.achieved_at, ub.value, ub.meta, ub.source {#
#}FROM {{ schema }}.user_badge AS ub JOIN {{ schema }}.badge_level AS l {#
#}ON l.badge = ub.badge AND l.key = ub.level WHERE ub.badge = {{ slug | sqlstring }})
{%- endmacro %}

{#- The progress rows of the batch's users who are done with the rule (gauge) or anchored
    (count, sum: `anchors`), reached by key (not the badge's rows, scanned): what the kind
    carries forward (`carry.progress`). -#}
{% macro carried_users(r, anchors=false) -%}
(SELECT plaudit_p.user_id, plaudit_p.value, plaudit_p.through_at, plaudit_p.next_level {#
#}FROM (SELECT DISTINCT plaudit_b.user_id FROM {{ r.batch }} AS plaudit_b {#
#}WHERE {{ for_rule(r, 'plaudit_b') }} AND {#
#}{{ anchored(r, 'plaudit_b.user_id') if anchors else done(r, 'plaudit_b.user_id', true) }}) {#
#}AS plaudit_u {#
#}JOIN LATERAL (SELECT plaudit_p.user_id, plaudit_p.value, plaudit_p.through_at, {#
#}plaudit_p.next_level {#
#}FROM {{ r.schema }}.user_progress AS plaudit_p {#
#}WHERE plaudit_p.user_id = plaudit_u.user_id {#
#}AND plaudit_p.badge = {{ r.slug | sqlstring }} AND plaudit_p.scope = '') {#
#}AS plaudit_p ON true)
{%- endmacro %}

{#-
  An incremental run re-reads the batch's users (affected()): a progress row of theirs that
  the result does not hold (its source rows were deleted, or the grants a composite read were
  revoked; a scope of theirs that vanished) goes, as a complete backfill removes it. Each such
  user gets a marker row (a progress row whose value and scope are NULL); run_rule deletes
  their progress rows that the result has no row for.
-#}
{% macro clearing(r, sql) -%}
WITH plaudit_rows AS MATERIALIZED (
{{ sql }}
)
SELECT * FROM plaudit_rows
UNION ALL
SELECT DISTINCT plaudit_b.user_id, NULL::text, NULL::text, NULL::timestamptz, NULL::numeric, NULL::jsonb, true
FROM {{ r.batch }} AS plaudit_b
WHERE {{ for_rule(r, 'plaudit_b') }}
{%- endmacro %}
