-- Fixed queries of the benchmark harness, one per `-- name:` header (parsed by
-- plaudit.sqlfiles.parse_queries). Rendered with {{ schema }}; values are positional $n.

-- name: server
SELECT version() AS version,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('work_mem') AS work_mem,
       current_setting('jit') AS jit,
       current_setting('max_parallel_workers_per_gather') AS parallel_workers;

-- name: vacuum_demo
-- After a bulk load, as autovacuum would do in time: sets hint bits and the visibility map,
-- so the per-user date lookups are index-only scans.
VACUUM (ANALYZE) public.users, public.posts, public.comments, public.article_reads,
    public.challenges, public.challenge_entries;

-- name: floor_write
-- The generator's baseline: the same number of rows, drawn and written as plainly as
-- possible (one unlogged table, no index).
CREATE UNLOGGED TABLE public.bench_floor AS
SELECT g AS id, floor(1000000 * random())::bigint AS user_id,
       timestamptz '2026-01-01' + g * interval '1 second' AS at
FROM generate_series(1, $1::bigint) AS g;

-- name: floor_drop
DROP TABLE IF EXISTS public.bench_floor;

-- name: reset_grants
-- Every backfill is measured from no grants at all, as on the day plaudit is adopted.
TRUNCATE {{ schema }}.user_badge, {{ schema }}.user_progress, {{ schema }}.run;

-- name: clear_queue
DELETE FROM {{ schema }}.event;

-- name: queue_length
SELECT count(*) AS events FROM {{ schema }}.event;

-- name: take_queue
-- The pending events, consumed, in queue order: what the app's writes just enqueued.
WITH taken AS (
    DELETE FROM {{ schema }}.event RETURNING event_id, type, user_id, occurred_at, payload
)
SELECT type, user_id, occurred_at, payload FROM taken ORDER BY event_id;

-- name: peek_queue
SELECT type, user_id, occurred_at, payload FROM {{ schema }}.event ORDER BY event_id;

-- name: history_counts
SELECT type, events FROM public.bench_history_counts($1::jsonb) ORDER BY type;

-- name: history_sample
-- $2 events drawn uniformly from the history, in time order.
SELECT type, user_id, occurred_at, payload
FROM (
    SELECT h.*, random() AS pick
    FROM public.bench_history_sample($1::jsonb, $3::float8, $4::float8) AS h
    ORDER BY pick
    LIMIT $2
) AS s
ORDER BY occurred_at, type, user_id;

-- name: users_count
SELECT count(*) AS users FROM public.users;

-- name: last_activity
-- New activity starts after everything in the history.
SELECT greatest(max(created_at), now()) + interval '1 day' AS at FROM public.comments;

-- name: new_activity
SELECT public.bench_new_activity($1::int, $2::timestamptz, $3::float8) AS rows;

-- name: bare_batch
SELECT public.bench_bare_batch($1::jsonb, $2::jsonb) AS users;

-- name: last_run
SELECT coalesce(max(run_id), 0) AS run_id FROM {{ schema }}.run;

-- name: track_functions
-- bench/drain.py: this session's calls of plaudit's functions are counted
SELECT set_config('track_functions', 'all', false);

-- name: flush_statistics
SELECT pg_stat_force_next_flush();

-- name: function_costs
-- The time spent in plaudit's functions so far (pg_stat_user_functions), all sessions'; a
-- rule's own function (rule_rows_<hash>, 008_boundary.sql) named by its rule.
SELECT coalesce('rule_rows(' || b.slug || ')', f.funcname) AS function, f.calls,
       f.total_time::float8 AS total_ms, f.self_time::float8 AS self_ms
FROM pg_stat_user_functions AS f
LEFT JOIN {{ schema }}.badge AS b
    ON f.funcname = 'rule_rows_' || left(md5(b.slug), 16)
WHERE f.schemaname = '{{ schema }}';

-- name: rule_costs
-- Per rule: runs, their total time and grants since run $1 (the rules' own timing, from
-- the run log).
SELECT badge, count(*) AS runs,
       sum(extract(epoch FROM finished_at - started_at))::float8 AS seconds,
       sum(granted) AS granted, count(*) FILTER (WHERE status <> 'ok') AS failed
FROM {{ schema }}.run
WHERE run_id > $1 AND mode = 'incremental'
GROUP BY badge
ORDER BY badge;

-- name: backfill_runs
-- The backfill runs since run $1, timed by plaudit.run_rule itself (server side).
SELECT badge, status, granted, progressed, message,
       extract(epoch FROM finished_at - started_at)::float8 AS seconds
FROM {{ schema }}.run
WHERE run_id > $1 AND mode = 'backfill'
ORDER BY run_id;

-- name: as_run_rule
-- The settings plaudit.run_rule runs its queries with (its SET clause), for this transaction.
SELECT set_config('jit', 'off', true);

-- Leaderboards at scale (bench/boards.py) ---------------------------------------------

-- name: boards_grants
-- Synthetic grants: $1 draws of (user, level) over $2 users (more grants for low user ids),
-- achieved over the two years before now; the duplicates collapse (ON CONFLICT). The scores
-- are maintained by the triggers unless the caller disabled them.
WITH levels AS (
    SELECT array_agg(badge ORDER BY badge, key) AS b, array_agg(key ORDER BY badge, key) AS k,
           count(*)::int AS n
    FROM {{ schema }}.badge_level
)
INSERT INTO {{ schema }}.user_badge (user_id, badge, level, achieved_at, awarded_at, source)
SELECT 1 + floor($2::int * power(random(), 1.5))::bigint, levels.b[r.i], levels.k[r.i], r.at,
       r.at, 'rule'
FROM levels, generate_series(1, $1::int) AS g,
     LATERAL (SELECT 1 + floor(random() * levels.n)::int + g * 0 AS i,
                     now() - random() * interval '730 days' + g * interval '0 s' AS at) AS r
ON CONFLICT DO NOTHING;

-- name: boards_reset
TRUNCATE {{ schema }}.user_badge CASCADE;

-- name: boards_triggers_off
ALTER TABLE {{ schema }}.user_badge DISABLE TRIGGER USER;

-- name: boards_triggers_on
ALTER TABLE {{ schema }}.user_badge ENABLE TRIGGER USER;

-- name: boards_counts
SELECT count(*) AS grants, count(DISTINCT user_id) AS users FROM {{ schema }}.user_badge;

-- name: boards_vacuum
VACUUM (ANALYZE) {{ schema }}.user_badge, {{ schema }}.score, {{ schema }}.score_count;

-- name: boards_groups
-- Classrooms of 30 users (an app table, indexed by classroom), and the group reading it.
DROP TABLE IF EXISTS public.bench_enrollment;
CREATE TABLE public.bench_enrollment AS
SELECT (u - 1) / 30 + 1 AS classroom_id, u::bigint AS student_id
FROM generate_series(1, (SELECT max(user_id)::int FROM {{ schema }}.user_badge)) AS u;
CREATE INDEX ON public.bench_enrollment (classroom_id);
ANALYZE public.bench_enrollment;
INSERT INTO {{ schema }}.leaderboard_group (name, query)
VALUES ('bench_class', 'SELECT e.classroom_id AS group_id, e.student_id AS user_id '
                       'FROM public.bench_enrollment AS e')
ON CONFLICT (name) DO UPDATE SET query = excluded.query;

-- name: boards_top
SELECT * FROM {{ schema }}.leaderboard($1, $2, now(), 'UTC', 10, 0, $3, $4);

-- name: boards_rank
SELECT * FROM {{ schema }}.rank_of($1::bigint, $2, $3, now(), 'UTC');

-- name: boards_hand_top
-- The baseline: the top 10 by points as one would write it over user_badge.
SELECT ub.user_id, sum(l.points) AS points, max(ub.achieved_at) AS reached_at
FROM {{ schema }}.user_badge AS ub
JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
GROUP BY ub.user_id
ORDER BY points DESC, reached_at, ub.user_id
LIMIT 10;

-- name: boards_hand_rank
-- The baseline of a rank: counting the users above one user's points, by hand.
WITH points AS (
    SELECT ub.user_id, sum(l.points) AS points
    FROM {{ schema }}.user_badge AS ub
    JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
    GROUP BY ub.user_id
)
SELECT 1 + count(*) FILTER (WHERE p.points > (SELECT points FROM points WHERE user_id = $1))
FROM points AS p;

-- name: boards_stats
SELECT count(*) AS levels FROM {{ schema }}.badge_stats(NULL, NULL);

-- name: boards_weeks
SELECT count(*) AS weeks FROM {{ schema }}.grants_per_week(NULL, 'UTC', NULL);

-- name: boards_hand_stats
-- The baseline of the statistics: holders per badge and level, by hand.
SELECT ub.badge, ub.level, count(DISTINCT ub.user_id) AS holders
FROM {{ schema }}.user_badge AS ub
GROUP BY ub.badge, ub.level;

-- The hand-written baseline (bench/handwritten.sql, bench/handwritten.py) ---------------

-- name: handwritten_tables
-- Its tables, empty: plaudit's grants and progress tables copied (columns, defaults, checks,
-- primary keys, indexes) with the same foreign keys (grants to their level; progress has
-- none since migration 0008), in a schema of their own, so that the hand-written upserts
-- pay what plaudit's pay for the same rows.
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.user_badge, bench.user_progress;
CREATE TABLE bench.user_badge (
    LIKE {{ schema }}.user_badge INCLUDING ALL,
    FOREIGN KEY (badge, level) REFERENCES {{ schema }}.badge_level (badge, key)
);
CREATE TABLE bench.user_progress (LIKE {{ schema }}.user_progress INCLUDING ALL);

-- name: handwritten_reset
-- Every hand-written pass starts from empty tables, as plaudit's first backfill does.
TRUNCATE bench.user_badge, bench.user_progress;

-- name: handwritten_diff
-- What plaudit and the hand-written SQL do not both hold for badge $1, EXCEPT both ways:
-- grants (user_id, level, scope, achieved_at), progress (user_id, scope, value, next_level).
-- One row per (rows, side) that differs, counted, with $2 examples.
WITH plaudit_grants AS (
    SELECT user_id, level, scope, achieved_at FROM {{ schema }}.user_badge
    WHERE badge = $1 AND source = 'rule'
),
hand_grants AS (
    SELECT user_id, level, scope, achieved_at FROM bench.user_badge WHERE badge = $1
),
plaudit_progress AS (
    SELECT user_id, scope, value, next_level FROM {{ schema }}.user_progress WHERE badge = $1
),
hand_progress AS (
    SELECT user_id, scope, value, next_level FROM bench.user_progress WHERE badge = $1
),
diff AS (
    SELECT 'grant' AS rows, 'only in plaudit''s' AS side, to_jsonb(d) AS row
    FROM (SELECT * FROM plaudit_grants EXCEPT SELECT * FROM hand_grants) AS d
    UNION ALL
    SELECT 'grant', 'only in the hand-written', to_jsonb(d)
    FROM (SELECT * FROM hand_grants EXCEPT SELECT * FROM plaudit_grants) AS d
    UNION ALL
    SELECT 'progress', 'only in plaudit''s', to_jsonb(d)
    FROM (SELECT * FROM plaudit_progress EXCEPT SELECT * FROM hand_progress) AS d
    UNION ALL
    SELECT 'progress', 'only in the hand-written', to_jsonb(d)
    FROM (SELECT * FROM hand_progress EXCEPT SELECT * FROM plaudit_progress) AS d
)
SELECT rows, side, count(*) AS n, (array_agg(row ORDER BY row::text))[1:$2::int] AS examples
FROM diff
GROUP BY rows, side
ORDER BY rows, side;
