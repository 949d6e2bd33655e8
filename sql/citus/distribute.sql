-- `plaudit init --citus`: where each of plaudit's tables lives on a Citus cluster (docs/citus.md
-- explains each choice). Runs after the migrations and the schema files, in init's
-- transaction; safe to run again (a table already placed is left as it is).
-- Rendered with {{ schema }}.
--
-- Distributed by user_id, co-located (one shard of each per user range, on the same worker):
--   user_badge, user_progress, suppressed_grant, citus_stage. A rule's grants, its progress
--   and the revocations it must not undo are joined on user_id: with the activity tables
--   distributed by their user column in the same co-location group, a backfill's statements
--   run on each worker's own shards (sql/schema/013_citus.sql).
-- Every other table stays a plain table on the coordinator, badge, badge_level and
--   compiled_rule included: only the coordinator reads them, and as Citus reference tables
--   (a copy on every node, the coordinator's included) they would break plaudit's
--   transactions: Citus runs a statement joining a reference table and a temporary table
--   (the batch, 004_events.sql) on the coordinator's copy, locally, and then refuses a
--   repartitioned join or a write to the reference table after statements that ran on
--   several shards at once ("a local execution has accessed a placement", "cannot modify
--   table ... because there was a parallel operation"); with local execution off it sends
--   that statement to the coordinator over a new connection, where the temporary table does
--   not exist. A rule joining them to distributed tables (badge(): badge_level) gets them
--   from the coordinator as a small intermediate result before its statement is pushed down
--   (a "Distributed Subplan" in its plan). Citus plans every statement touching a table in
--   its metadata, and refuses for one the parameters of LANGUAGE sql functions it cannot
--   plan without their values: the fewer, the better. On the coordinator: meta, badge,
--   badge_level, compiled_rule, category, leaderboard_group, webhook; the run log (run, with
--   its identity); the event queue (event: read in event_id order across users and consumed
--   with FOR UPDATE SKIP LOCKED, which Citus supports only for single-shard queries);
--   grant_log; the outbox and its deliveries; the leaderboard scores (kept by statement
--   triggers with transition tables on user_badge, which Citus does not run on distributed
--   tables: scores are not kept on Citus); migration.
-- A complete backfill's rows, staged on the workers between its statements (013_citus.sql):
-- rows of one run, deleted by it. Unlogged: they never outlive the transaction that wrote them.
CREATE UNLOGGED TABLE IF NOT EXISTS {{ schema }}.citus_stage (
    run_id bigint NOT NULL,
    user_id {{ user_id_type }} NOT NULL,
    scope text,
    level text,
    achieved_at timestamptz,
    value numeric,
    meta jsonb,
    is_progress boolean
);
DO $distribute$
DECLARE
    v_key text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_dist_partition
                   WHERE logicalrelid = '{{ schema }}.user_badge'::regclass) THEN
        -- Citus refuses triggers on distributed and reference tables (docs/citus.md): a
        -- schema that was plain before keeps its scores no more
        DROP TRIGGER IF EXISTS score_grants_added ON {{ schema }}.user_badge;
        DROP TRIGGER IF EXISTS score_grants_removed ON {{ schema }}.user_badge;
        DROP TRIGGER IF EXISTS score_grants_changed ON {{ schema }}.user_badge;
        DROP TRIGGER IF EXISTS score_grants_truncated ON {{ schema }}.user_badge;
        DROP TRIGGER IF EXISTS score_points_changed ON {{ schema }}.badge_level;
        -- The distributed tables' foreign keys (to badge, badge_level) go: Citus keeps none
        -- from a distributed table to a coordinator table. deploy removes a badge's
        -- progress and revocations itself (queries.sql remove_badge_row, 003_deploy.sql), as
        -- the keys' ON DELETE CASCADE did, and refuses to remove a level with grants.
        FOR v_key IN
            SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname)
            FROM pg_constraint AS c
            WHERE c.contype = 'f' AND c.connamespace = '{{ schema }}'::regnamespace
              AND c.conrelid = ANY (ARRAY['{{ schema }}.user_badge', '{{ schema }}.user_progress',
                  '{{ schema }}.suppressed_grant']::regclass[])
        LOOP
            EXECUTE v_key;
        END LOOP;
        -- the co-location group's anchor first: the others join it
        PERFORM create_distributed_table('{{ schema }}.user_badge', 'user_id');
        PERFORM create_distributed_table('{{ schema }}.user_progress', 'user_id',
                                         colocate_with => '{{ schema }}.user_badge');
        PERFORM create_distributed_table('{{ schema }}.suppressed_grant', 'user_id',
                                         colocate_with => '{{ schema }}.user_badge');
        PERFORM create_distributed_table('{{ schema }}.citus_stage', 'user_id',
                                         colocate_with => '{{ schema }}.user_badge');
    END IF;
END
$distribute$;

