-- Fixed queries used by the Python runner, one per `-- name:` header.
-- Rendered with {{ schema }}; values are positional $n parameters (psycopg RawCursor).

-- name: init_lock
SELECT pg_advisory_xact_lock(hashtext('{{ schema }}'), 0);

-- name: deploy_badge
SELECT {{ schema }}.deploy_badge($1::jsonb);

-- name: set_rule_timeout
-- The rule's own timeout, else the configured default, for the next statement of this
-- transaction (the one calling run_rule).
SELECT set_config(
    'statement_timeout',
    coalesce((SELECT timeout FROM {{ schema }}.badge WHERE slug = $1), $2),
    true);

-- name: run_rule
SELECT run_id, status, granted, progressed, levels, message
FROM {{ schema }}.run_rule($1, $2, $3::text[], $4, $5);

-- name: deployed_badges
SELECT slug, enabled, dirty FROM {{ schema }}.badge ORDER BY slug;

-- name: user_grants
SELECT b.name AS badge_name, ub.badge, ub.level, l.name AS level_name, ub.scope,
       ub.achieved_at, ub.source, l.points
FROM {{ schema }}.user_badge AS ub
JOIN {{ schema }}.badge AS b ON b.slug = ub.badge
JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
WHERE ub.user_id = $1
ORDER BY ub.achieved_at, b.name, l.position, ub.scope;

-- name: user_revoked
-- Grants revoked by hand and not awarded again: no rule grants them (suppressed_grant).
SELECT b.name AS badge_name, s.badge, s.level, l.name AS level_name, s.scope, s.reason,
       s.revoked_by, s.revoked_at
FROM {{ schema }}.suppressed_grant AS s
JOIN {{ schema }}.badge AS b ON b.slug = s.badge
JOIN {{ schema }}.badge_level AS l ON l.badge = s.badge AND l.key = s.level
WHERE s.user_id = $1
ORDER BY s.revoked_at, b.name, l.position, s.scope;

-- name: trophy_case
-- Every badge the user may see, where they stand, its face in locale $2 (010_trophy_case.sql).
SELECT badge, scope, status, name, category, category_name, level, level_name, next_level,
       next_level_name, value, threshold, percent, icon, points, description, hint,
       achieved_at, source, secret, kind, period
FROM {{ schema }}.trophy_case($1, $2);

-- name: grant_summary
-- Grants per badge and level, for the backfill summary.
SELECT b.slug, b.name AS badge_name, l.key AS level, l.name AS level_name,
       count(ub.user_id) AS grants
FROM {{ schema }}.badge AS b
JOIN {{ schema }}.badge_level AS l ON l.badge = b.slug
LEFT JOIN {{ schema }}.user_badge AS ub ON ub.badge = l.badge AND ub.level = l.key
WHERE b.slug = ANY($1::text[])
GROUP BY b.slug, b.name, l.key, l.name, l.position
ORDER BY b.slug, l.position;

-- name: deployed_hashes
SELECT slug, definition_hash FROM {{ schema }}.badge WHERE slug = ANY($1::text[]);

-- name: demo_tables_foreign
-- A row (why) when the database is not the demo's: a `users` table the demo did not create
-- (the demo truncates its tables), or a plaudit schema without the demo's tables (the demo
-- drops the schema). The demo refuses such a database before it changes anything.
SELECT CASE WHEN to_regclass('public.users') IS NOT NULL
            THEN 'it has a users table the demo did not create'
            ELSE 'it has a plaudit schema ({{ schema }}) but not the demo''s tables' END
       AS reason
WHERE CASE WHEN to_regclass('public.users') IS NOT NULL
           THEN obj_description(to_regclass('public.users'), 'pg_class')
                IS DISTINCT FROM 'plaudit demo app'
           ELSE to_regnamespace('{{ schema }}') IS NOT NULL END;

-- name: demo_generate
SELECT table_name, row_count FROM public.demo_generate($1, $2);

-- name: demo_reset_schema
DROP SCHEMA IF EXISTS {{ schema }} CASCADE;

-- name: demo_showcase_user
-- The demo's trophy case: the user with the most grants (ties by points) among those still
-- on their way to a next level, so the case shows grants and progress.
SELECT ub.user_id::text AS user_id
FROM {{ schema }}.user_badge AS ub
JOIN {{ schema }}.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
WHERE EXISTS (SELECT FROM {{ schema }}.user_progress AS p
              WHERE p.user_id = ub.user_id AND p.next_level IS NOT NULL)
GROUP BY ub.user_id
ORDER BY count(*) DESC, sum(l.points) DESC, ub.user_id
LIMIT 1;

-- Events and incremental runs (sql/schema/004_events.sql) -------------------------------

-- name: configure
SELECT event, table_name, change FROM {{ schema }}.configure($1::jsonb);

-- name: track
SELECT {{ schema }}.track($1, $2, coalesce($3::timestamptz, now()), coalesce($4::jsonb, '{}'))
    AS event_id;

-- name: take_events
-- Starts a batch: consumes up to $1 pending events in the current transaction.
SELECT {{ schema }}.take_events($1::int) AS events;

-- name: lock_rule
-- Wait for a rule's lock (backfill --wait): the key plaudit.run_rule tries, which then finds
-- it held by its own session.
SELECT pg_advisory_xact_lock(hashtext('{{ schema }}'), hashtext($1));

-- name: run_order
-- The deployed badges among $1 in run order (each after the badges it reads).
SELECT o.slug FROM {{ schema }}.badge_run_order AS o
WHERE o.slug = ANY ($1::text[])
ORDER BY o.depth, o.slug;

-- name: rule_dependencies
-- Which deployed badges each deployed badge reads (badge('slug')): (slug, dependency) edges.
SELECT b.slug, d.dependency
FROM {{ schema }}.badge AS b
CROSS JOIN LATERAL jsonb_array_elements_text(
    coalesce(b.definition -> 'depends_on', '[]')) AS d (dependency);

-- name: backfill_estimates
-- How long each of the badges $1 took in its last complete backfill that succeeded, in
-- seconds: the order in which `backfill --jobs` starts them (longest first).
SELECT b.badge, x.seconds
FROM unnest($1::text[]) AS b (badge)
CROSS JOIN LATERAL (
    SELECT extract(epoch FROM r.finished_at - r.started_at)::float8 AS seconds
    FROM {{ schema }}.run AS r
    WHERE r.badge = b.badge AND r.mode = 'backfill' AND r.status = 'ok' AND r.params = '{}'
    ORDER BY r.started_at DESC
    LIMIT 1
) AS x;

-- name: defer_scores
-- This transaction's leaderboard scores wait for score_catch_up (a backfill of several rules).
SELECT {{ schema }}.defer_scores();

-- name: score_catch_up
-- Recompute the scores of the next users that deferred transactions left; how many.
SELECT {{ schema }}.score_catch_up() AS users;

-- name: batch_reset
-- An empty batch, e.g. for the grant events of a backfill's run (its dependents re-check them).
SELECT {{ schema }}.batch_reset();

-- name: run_batch
-- The event loop on the session's batch: each rule it triggers, in run order, under its
-- deadline ($1: the default timeout), except the rules $2.
SELECT badge, run_id, status, granted, progressed, moved, levels, message, seconds
FROM {{ schema }}.run_batch($1, true, $2::text[]);

-- name: watchdog
-- Cancel session $1's rule run if it is past its deadline (run_timed publishes it), unless
-- that deadline is $2 (cancelled already).
SELECT {{ schema }}.watch_session($1::int, $2::text) AS cancelled;

-- name: clear_timeout
-- No statement_timeout for the rest of the transaction: the event loop's rules each have
-- their own deadline (run_timed), not the timeout of the statement before.
SELECT set_config('statement_timeout', '0', true);

-- name: run_grants
SELECT user_id, badge, level, scope, badge_name, level_name, points, icon, achieved_at
FROM {{ schema }}.run_grants($1::bigint[]);

-- name: check
SELECT user_id, badge, level, scope, badge_name, level_name, points, icon, achieved_at
FROM {{ schema }}.check($1::jsonb);

-- name: unseen
SELECT badge, level, scope, badge_name, level_name, points, icon, achieved_at, awarded_at
FROM {{ schema }}.unseen($1);

-- name: mark_seen
SELECT {{ schema }}.mark_seen($1, $2, $3, $4);

-- name: listen_events
-- `plaudit run --follow` wakes up on this channel when events are inserted.
LISTEN {{ schema }}_event;

-- Manual grants and revocation (sql/schema/005_grants.sql) --------------------------------

-- name: run_counts
-- What the run row counts beyond run_rule's result: rule grants a `revoke: true` backfill
-- removed, grants moved to an earlier date (a separate statement: the one calling run_rule
-- cannot see the run row that the call writes).
SELECT revoked, moved FROM {{ schema }}.run WHERE run_id = $1;

-- name: award_badge
SELECT level, scope, outcome, source, achieved_at
FROM {{ schema }}.award_badge($1, $2, $3, $4, $5, $6::timestamptz);

-- name: revoke_badge
SELECT level, scope, source, achieved_at
FROM {{ schema }}.revoke_badge($1, $2, $3, $4, $5);

-- Authoring tools: contract checks, preview, rule tests (sql/schema/006_authoring.sql) ----

-- name: authoring_batch_table
-- The (empty) batch table, so that incremental renderings can be described.
SELECT {{ schema }}.batch_reset();

-- name: type_names
SELECT t.oid::bigint AS oid, format_type(t.oid, NULL) AS name
FROM pg_type AS t
WHERE t.oid = ANY($1::bigint[]::oid[]);

-- name: read_only
-- preview: whatever the rule's query calls, this transaction cannot write
SET TRANSACTION READ ONLY;

-- name: preview_batch
-- preview: a batch to plan a rule's incremental SQL for (in a transaction rolled back)
SELECT {{ schema }}.batch_fill($1::jsonb) AS events;

-- name: preview_rule
SELECT {{ schema }}.preview_rule($1, $2, $3::text[], $4) AS preview;

-- name: explain_rule
SELECT line FROM {{ schema }}.explain_rule($1, $2::text[]) AS line;

-- name: badge_level_grants
-- Grants per level of the given badges (safe redeploys, preview).
SELECT badge, level, count(*) AS grants
FROM {{ schema }}.user_badge
WHERE badge = ANY($1::text[])
GROUP BY badge, level;

-- name: deployed_definitions
SELECT b.slug, b.definition, b.enabled,
       coalesce((SELECT jsonb_object_agg(c.mode, c.sql)
                 FROM {{ schema }}.compiled_rule AS c WHERE c.badge = b.slug), '{}') AS compiled
FROM {{ schema }}.badge AS b
ORDER BY b.slug;

-- name: delete_level_grants
-- deploy --force: a level that leaves the rule file takes its grants with it, each logged
SELECT {{ schema }}.delete_grants($1, $2, 'deploy --force: level removed from the rule file')
    AS deleted;

-- name: remove_badge
-- deploy: a badge whose rule file is gone (with its grants only under --force, each logged),
-- then its row (remove_badge_row), once its grants are gone
SELECT {{ schema }}.delete_grants($1, NULL, 'deploy --force: rule file removed') AS grants;

-- name: remove_badge_row
-- its levels, compiled SQL, progress and revocations with it (the foreign keys' cascade,
-- said again for Citus, where these tables keep none: docs/citus.md), and its incremental
-- function (008_boundary.sql)
WITH progress AS (DELETE FROM {{ schema }}.user_progress WHERE badge = $1),
     revoked AS (DELETE FROM {{ schema }}.suppressed_grant WHERE badge = $1),
     compiled AS (DELETE FROM {{ schema }}.compiled_rule WHERE badge = $1),
     levels AS (DELETE FROM {{ schema }}.badge_level WHERE badge = $1),
     gone AS (DELETE FROM {{ schema }}.badge WHERE slug = $1 RETURNING slug)
SELECT {{ schema }}.install_rule_function(gone.slug, NULL) FROM gone;

-- name: set_timezone
SELECT set_config('TimeZone', $1, true);

-- name: test_table
SELECT {{ schema }}.test_table($1, $2::jsonb, $3::regclass) AS row_count;

-- name: test_given
-- The rows of a test case's SELECT, for test_table, read under the rule boundary
-- (query_rows). `given` is the case's query as a quoted literal, checked to be one plain
-- SELECT before it gets here (ruletests.checked_select); `columns` its described columns.
CREATE TEMPORARY TABLE plaudit_test_given AS
SELECT * FROM {{ schema }}.query_rows({{ given }}) AS g ({{ columns }});

-- name: test_given_drop
DROP TABLE pg_temp.plaudit_test_given;

-- name: meta_exists
-- Whether this schema is installed (plaudit test works before `plaudit init` too).
SELECT to_regclass('{{ schema }}.meta') IS NOT NULL AS installed;

-- name: adopt_rule_role
-- plaudit test: the scratch schema's rules run as the real schema's runner role
SELECT {{ schema }}.adopt_rule_role($1) AS role;

-- name: grant_rule_role
SELECT {{ schema }}.grant_rule_role($1::regclass);

-- name: test_batch
SELECT {{ schema }}.batch_fill($1::jsonb) AS events;

-- name: test_grants
SELECT user_id::text AS user_id, level, scope, achieved_at
FROM {{ schema }}.user_badge
WHERE badge = $1
ORDER BY user_id::text, level, scope;

-- name: test_progress
SELECT user_id::text AS user_id, scope, value, next_level, expires_at
FROM {{ schema }}.user_progress
WHERE badge = $1
ORDER BY user_id::text, scope;

-- name: demo_live_activity
-- One round of live app writes for the demo (sql/demo/live.sql).
SELECT table_name, row_count FROM public.demo_live_activity();

-- Running as database jobs: pg_cron, status, the runner role (sql/schema/007_jobs.sql) ------

-- name: cron_probe
-- Whether this server has pg_cron, and where: the settings are readable only by superusers
-- and pg_read_all_settings (NULL here otherwise; '' when pg_cron is not preloaded: a
-- cron.database_name in postgresql.conf alone is no sign that it is).
SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_cron') AS installed,
       (SELECT extversion FROM pg_extension WHERE extname = 'pg_cron') AS version_here,
       CASE WHEN NOT ((SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                      OR pg_has_role(current_user, 'pg_read_all_settings', 'USAGE'))
            THEN NULL
            WHEN current_setting('shared_preload_libraries') ~ '(^|[\s,"])pg_cron($|[\s,"])'
            THEN coalesce(current_setting('cron.database_name', true), 'postgres')
            ELSE '' END AS cron_database,
       current_database() AS database,
       current_user AS username,
       current_setting('server_version_num')::int / 10000 AS major;

-- name: cron_version
SELECT extversion AS version FROM pg_extension WHERE extname = 'pg_cron';

-- name: cron_create_extension
CREATE EXTENSION IF NOT EXISTS pg_cron;

-- name: job_definitions
-- The jobs `plaudit schedule` installs. Commands are written by format(), so every value in
-- them is quoted by PostgreSQL. $1 events schedule, $2 nightly schedule, $3 batch size,
-- $4 default rule timeout of incremental runs, $5 run retention, $6 job history retention,
-- $7 the pg_cron database (where the history job runs), $8 default rule timeout of backfills,
-- $9 outbox retention.
WITH job (position, job, schedule, command, database) AS (
    VALUES
        (1, 'events', $1::text,
         format('CALL %I.job_events(%s, %L)', '{{ schema }}', $3::int, $4::text),
         current_database()),
        (2, 'watchdog', '* * * * *',
         format('SELECT %I.job_watchdog()', '{{ schema }}'),
         current_database()),
        (3, 'nightly', $2::text,
         format('CALL %I.job_nightly(%L, %L, %L)', '{{ schema }}', $8::text, $5::interval,
                $9::interval),
         current_database()),
        (4, 'history', $2::text, NULL, $7::text)
),
named AS (
    SELECT j.*, format('plaudit:%s.%s:%s', current_database(), '{{ schema }}', j.job) AS jobname
    FROM job AS j
)
SELECT n.job, n.jobname, n.schedule, n.database,
       -- pg_cron's history of these jobs, older than the retention
       coalesce(n.command, format(
           'DELETE FROM cron.job_run_details WHERE end_time < now() - %L::interval '
           'AND jobid IN (SELECT jobid FROM cron.job WHERE starts_with(jobname, %L))',
           $6::interval, format('plaudit:%s.%s:', current_database(), '{{ schema }}')))
           AS command
FROM named AS n
ORDER BY n.position;

-- name: cron_jobs
SELECT jobid, jobname::text AS jobname, schedule, command, database, username, active
FROM cron.job
WHERE jobname = ANY ($1::text[]) AND username = current_user
ORDER BY jobname;

-- name: cron_schedule
SELECT cron.schedule($1, $2, $3) AS jobid;

-- name: cron_schedule_in_database
SELECT cron.schedule_in_database($1, $2, $3, $4) AS jobid;

-- name: cron_unschedule
SELECT cron.unschedule($1::bigint) AS removed;

-- name: cron_job_runs
-- Each of the given jobs with its last finished run, whether a run is under way, and its
-- failures of the last day.
SELECT j.jobname::text AS jobname, j.schedule, j.active, j.database, d.status, d.start_time,
       d.end_time, d.return_message,
       EXISTS (SELECT FROM cron.job_run_details AS r
               WHERE r.jobid = j.jobid AND r.end_time IS NULL
                 AND r.status IN ('starting', 'connecting', 'sending', 'running')) AS running,
       (SELECT count(*) FROM cron.job_run_details AS f
        WHERE f.jobid = j.jobid AND f.status = 'failed'
          AND f.start_time > now() - interval '1 day') AS failed_last_day
FROM cron.job AS j
LEFT JOIN LATERAL (
    SELECT r.status, r.start_time, r.end_time, r.return_message
    FROM cron.job_run_details AS r
    WHERE r.jobid = j.jobid AND r.status IN ('succeeded', 'failed')
    ORDER BY r.runid DESC
    LIMIT 1
) AS d ON true
WHERE j.jobname = ANY ($1::text[]) AND j.username = current_user
ORDER BY j.jobname;

-- name: job_rule_runs
-- plaudit's side of `schedule --status`: rule runs of the last day, per mode and status.
SELECT r.mode, r.status, count(*) AS runs, coalesce(sum(r.granted), 0) AS granted,
       max(r.started_at) AS last_started_at
FROM {{ schema }}.run AS r
WHERE r.started_at > now() - interval '1 day'
GROUP BY r.mode, r.status
ORDER BY r.mode, r.status;

-- name: status_events
SELECT count(*) AS pending,
       extract(epoch FROM now() - min(e.tracked_at))::float8 AS oldest_seconds
FROM {{ schema }}.event AS e;

-- name: status_scores
-- Users whose leaderboard scores a backfill deferred and has not recomputed yet.
SELECT count(*) AS users, extract(epoch FROM now() - min(s.since))::float8 AS oldest_seconds
FROM {{ schema }}.score_stale AS s;

-- name: status_rules
-- Every deployed rule with its last run, and whether its last backfill skipped it (busy).
SELECT b.slug, b.enabled, b.dirty, b.due, b.triggers = '{}' AS no_triggers,
       r.mode, r.status, r.started_at,
       extract(epoch FROM r.finished_at - r.started_at)::float8 AS seconds,
       r.granted, r.message,
       coalesce((SELECT l.status = 'skipped' FROM {{ schema }}.run AS l
                 WHERE l.badge = b.slug AND l.mode = 'backfill'
                 ORDER BY l.started_at DESC, l.run_id DESC LIMIT 1), false) AS backfill_skipped
FROM {{ schema }}.badge AS b
LEFT JOIN LATERAL (
    SELECT l.mode, l.status, l.started_at, l.finished_at, l.granted, l.message
    FROM {{ schema }}.run AS l
    WHERE l.badge = b.slug
    ORDER BY l.started_at DESC, l.run_id DESC
    LIMIT 1
) AS r ON true
ORDER BY b.slug;

-- name: status_failures
-- Failed runs of the last day, per rule.
SELECT r.badge AS slug, count(*) AS failures, max(r.started_at) AS last_failed_at,
       (array_agg(r.message ORDER BY r.started_at DESC, r.run_id DESC))[1] AS last_message
FROM {{ schema }}.run AS r
WHERE r.status = 'failed' AND r.started_at > now() - interval '1 day'
GROUP BY r.badge
ORDER BY r.badge;

-- name: due_rules
SELECT slug, reason FROM {{ schema }}.due_rules();

-- name: setup_runner_role
SELECT step FROM {{ schema }}.setup_runner_role($1) AS step;

-- name: rule_role
SELECT value AS role FROM {{ schema }}.meta WHERE key = 'rule_role';

-- name: missing_grants
-- The GRANTs role $1 lacks to read the tables $2 (as the rules name them): schemas first.
WITH t AS (
    SELECT DISTINCT c.oid, c.relnamespace
    FROM unnest($2::text[]) AS n (name)
    JOIN pg_class AS c ON c.oid = to_regclass(n.name)
)
SELECT g.statement
FROM (
    SELECT DISTINCT 1 AS step, format('GRANT USAGE ON SCHEMA %s TO %I;',
                                      t.relnamespace::regnamespace, $1::text) AS statement
    FROM t
    WHERE NOT has_schema_privilege($1::text, t.relnamespace, 'USAGE')
    UNION ALL
    SELECT 2, format('GRANT SELECT ON %s TO %I;', t.oid::regclass, $1::text)
    FROM t
    WHERE NOT has_table_privilege($1::text, t.oid, 'SELECT')
) AS g
ORDER BY g.step, g.statement;

-- name: leaderboard
SELECT rank, user_id, value, reached_at
FROM {{ schema }}.leaderboard($1, $2, $3, $4, $5, $6, $7, $8);

-- name: rank_of
SELECT rank, value, ranked, above, above_value, below, below_value
FROM {{ schema }}.rank_of($1, $2, $3, $4, $5, $6, $7);

-- name: badge_stats
-- Statistics (sql/schema/011_stats.sql): per badge and level, per week, the quiet rules.
SELECT badge, level, holders, grants, players, rarity, achieved_day, achieved_week,
       achieved_month, awarded_day, awarded_week, awarded_month, achieved_since,
       median_from_first
FROM {{ schema }}.badge_stats($1::timestamptz, $2::text[]);

-- name: grants_per_week
SELECT week, grants FROM {{ schema }}.grants_per_week($1::timestamptz, $2::text, $3::text[]);

-- name: quiet_rules
SELECT badge, runs, first_run_at, last_run_at, last_granted_at
FROM {{ schema }}.quiet_rules($1::int);

-- Webhooks: the outbox and its deliveries (sql/schema/012_outbox.sql) ---------------------

-- name: deployed_webhooks
-- The endpoints the outbox fans out to, as deploy synced them from plaudit.yaml.
SELECT name, url, badges, tags, coalesce_window::text AS coalesce_window
FROM {{ schema }}.webhook
ORDER BY name;

-- name: take_deliveries
-- A deliverer's batch: up to $2 messages (a user's due rows for one endpoint each) of the
-- endpoints $1, locked; a user sent $3 messages in the last hour waits.
SELECT webhook, user_id, notice_id, action, badge, level, scope, "position", notice,
       attempts, created_at
FROM {{ schema }}.take_deliveries($1::text[], $2::int, $3::int);

-- name: finish_deliveries
-- The outcome of each row sent ($1: [{webhook, user_id, notice_id, message_id, ok, error}]);
-- retries after $2 doubling up to $3; a row tried for $4 is a dead letter.
SELECT delivered, retrying, dead
FROM {{ schema }}.finish_deliveries(
    $1::jsonb, {{ schema }}.timeout_interval($2), {{ schema }}.timeout_interval($3),
    $4::interval);

-- name: retry_dead
SELECT {{ schema }}.retry_dead($1::text[]) AS revived;

-- name: next_delivery
-- Seconds until the next row of the endpoints $1 is due (negative: due now); NULL: none.
SELECT extract(epoch FROM min(d.due_at) - now())::float8 AS seconds
FROM {{ schema }}.delivery AS d
WHERE d.status = 'pending' AND d.webhook = ANY ($1::text[]);

-- name: listen_outbox
-- `plaudit deliver --follow` wakes up on this channel when the outbox gains rows.
LISTEN {{ schema }}_outbox;

-- name: outbox_status
-- Per endpoint: the rows waiting (and since when the oldest was queued), the dead letters,
-- and the last error of a row not delivered.
SELECT w.name AS webhook, w.url,
       count(d.notice_id) FILTER (WHERE d.status = 'pending') AS pending,
       extract(epoch FROM now() - min(d.queued_at) FILTER (WHERE d.status = 'pending'))::float8
           AS oldest_pending_seconds,
       count(d.notice_id) FILTER (WHERE d.status = 'dead') AS dead,
       (array_agg(d.last_error ORDER BY d.due_at DESC)
            FILTER (WHERE d.last_error IS NOT NULL))[1] AS last_error
FROM {{ schema }}.webhook AS w
LEFT JOIN {{ schema }}.delivery AS d ON d.webhook = w.name AND d.status <> 'delivered'
GROUP BY w.name, w.url
ORDER BY w.name;

-- name: prune_outbox
SELECT {{ schema }}.prune_outbox($1::interval) AS pruned;

-- name: pg_net_available
-- Whether this server could send HTTP from inside the database (the pg_net extension).
SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_net') AS available;
