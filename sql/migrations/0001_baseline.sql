-- Migration 0001: the tables of plaudit 0.1.0 (indexes, constraints, identity sequences and
-- the meta row included), which held them in sql/schema/ with the functions. Everything that
-- holds data is created by a migration under sql/migrations/; functions, views and triggers
-- are re-created by every init from sql/schema/.
--
-- This baseline stays idempotent (IF NOT EXISTS, ADD COLUMN IF NOT EXISTS, a guarded
-- constraint change), unlike the migrations after it: an install that predates the
-- plaudit.migration table (plaudit 0.1.0, or an earlier development schema) has no record of
-- it, so init runs it there too. On 0.1.0 it changes nothing; on an older schema it adds what
-- 0.1.0 added since. Either way it is then recorded as applied, and later migrations, which
-- run exactly once, can assume its tables as written here. That is simpler and safer than
-- guessing from the catalog whether an unrecorded schema is "0.1.0 enough" to skip it.
--
-- Rendered with Jinja: {{ schema }} is the configured schema, {{ user_id_type }} the user id
-- type. Every key of a per-user table leads with user_id so the tables can be distributed by
-- user on Citus.

CREATE SCHEMA IF NOT EXISTS {{ schema }};

CREATE TABLE IF NOT EXISTS {{ schema }}.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

-- The user id type is fixed at the first init (sql/schema/001_user_id_type.sql checks it
-- at every init): a different configured type would need a data migration, not an upgrade.
INSERT INTO {{ schema }}.meta (key, value) VALUES ('user_id_type', '{{ user_id_type }}')
ON CONFLICT (key) DO NOTHING;

-- Badge definitions, synced from the rule files by `deploy`.
CREATE TABLE IF NOT EXISTS {{ schema }}.badge (
    slug text PRIMARY KEY,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    kind text NOT NULL,
    triggers text[] NOT NULL DEFAULT '{}',
    tags text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    params jsonb NOT NULL DEFAULT '[]',
    timeout text,
    revoke boolean NOT NULL DEFAULT false,
    definition jsonb NOT NULL,
    definition_hash text NOT NULL,
    -- set when a run of this rule failed: its grants may lag until a backfill repairs them
    dirty boolean NOT NULL DEFAULT false,
    deployed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {{ schema }}.badge_level (
    badge text NOT NULL REFERENCES {{ schema }}.badge (slug) ON DELETE CASCADE,
    key text NOT NULL,
    position int NOT NULL,
    name text NOT NULL,
    threshold numeric,
    points int NOT NULL DEFAULT 0,
    icon text,
    PRIMARY KEY (badge, key)
);

-- Each rule's rendered SQL per mode, exactly as deployed and executed.
CREATE TABLE IF NOT EXISTS {{ schema }}.compiled_rule (
    badge text NOT NULL REFERENCES {{ schema }}.badge (slug) ON DELETE CASCADE,
    mode text NOT NULL CHECK (mode IN ('backfill', 'incremental')),
    sql text NOT NULL,
    -- [{name, type}] in placeholder order: $1 is params[0]
    params jsonb NOT NULL DEFAULT '[]',
    deployed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (badge, mode)
);

-- One row per rule run, committed in the same transaction as the run's grants.
CREATE TABLE IF NOT EXISTS {{ schema }}.run (
    run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    badge text NOT NULL,
    mode text NOT NULL,
    params jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    granted int NOT NULL DEFAULT 0,
    progressed int NOT NULL DEFAULT 0,
    message text
);
CREATE INDEX IF NOT EXISTS run_badge_started_idx ON {{ schema }}.run (badge, started_at DESC);

CREATE TABLE IF NOT EXISTS {{ schema }}.user_badge (
    user_id {{ user_id_type }} NOT NULL,
    badge text NOT NULL,
    level text NOT NULL,
    scope text NOT NULL DEFAULT '',
    -- when the criterion was really met, never the time of the run
    achieved_at timestamptz NOT NULL,
    awarded_at timestamptz NOT NULL DEFAULT now(),
    value numeric,
    meta jsonb,
    source text NOT NULL DEFAULT 'rule' CHECK (source IN ('rule', 'manual')),
    run_id bigint,
    -- NULL until the user has been shown the badge
    seen_at timestamptz,
    PRIMARY KEY (user_id, badge, level, scope),
    FOREIGN KEY (badge, level) REFERENCES {{ schema }}.badge_level (badge, key)
);
CREATE INDEX IF NOT EXISTS user_badge_badge_idx ON {{ schema }}.user_badge (badge, level);

CREATE TABLE IF NOT EXISTS {{ schema }}.user_progress (
    user_id {{ user_id_type }} NOT NULL,
    badge text NOT NULL REFERENCES {{ schema }}.badge (slug) ON DELETE CASCADE,
    scope text NOT NULL DEFAULT '',
    value numeric NOT NULL,
    -- the lowest level not yet reached; NULL once every level is reached
    next_level text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, badge, scope)
);


-- Incremental runs equal a backfill (README, "Incremental equals backfill").
-- A rule is due until a complete backfill of its current SQL has succeeded: 'new' (never
-- backfilled) or 'changed' (its compiled SQL changed). While due, incremental runs do not
-- trust its grants and progress for shortcuts, and due_rules() lists it for the nightly job.
ALTER TABLE {{ schema }}.badge ADD COLUMN IF NOT EXISTS due text
    CHECK (due IN ('new', 'changed'));
-- Rule grants whose achieved_at a run moved earlier (a late event): reported, not notified.
ALTER TABLE {{ schema }}.run ADD COLUMN IF NOT EXISTS moved int NOT NULL DEFAULT 0;
-- The time of the latest source row the progress value counts (count, sum, gauge): an
-- incremental run of a user who holds every level adds only the rows after it.
ALTER TABLE {{ schema }}.user_progress ADD COLUMN IF NOT EXISTS through_at timestamptz;

-- Revocations are decisions: no rule run grants a revoked (user, badge, level, scope) again
-- until `plaudit award` lifts it.
CREATE TABLE IF NOT EXISTS {{ schema }}.suppressed_grant (
    user_id {{ user_id_type }} NOT NULL,
    badge text NOT NULL,
    level text NOT NULL,
    scope text NOT NULL,
    reason text NOT NULL,
    revoked_by text NOT NULL DEFAULT session_user,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, badge, level, scope),
    FOREIGN KEY (badge, level) REFERENCES {{ schema }}.badge_level (badge, key) ON DELETE CASCADE
);

-- The queue. Consumed events are deleted, so the table holds only what is pending. It is not
-- a per-user table (it is read in event_id order across users); on Citus it stays a local
-- table on the coordinator.
CREATE TABLE IF NOT EXISTS {{ schema }}.event (
    event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type text NOT NULL CHECK (type ~ '^[a-z0-9_]+$'),
    user_id {{ user_id_type }} NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    tracked_at timestamptz NOT NULL DEFAULT now()
);
-- An event deferred for one rule only (run_batch_rule: the rule was busy in another run):
-- NULL for every rule. A deferred event may be a grant event (`badge:<slug>`).
ALTER TABLE {{ schema }}.event ADD COLUMN IF NOT EXISTS rule text;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint
                   WHERE conname = 'event_type_check'
                     AND conrelid = '{{ schema }}.event'::regclass
                     AND pg_get_constraintdef(oid) LIKE '%rule%') THEN
        ALTER TABLE {{ schema }}.event DROP CONSTRAINT IF EXISTS event_type_check;
        ALTER TABLE {{ schema }}.event ADD CONSTRAINT event_type_check
            CHECK (type ~ '^[a-z0-9_]+$' OR rule IS NOT NULL AND type ~ '^badge:[a-z0-9_]+$');
    END IF;
END
$$;

-- The grants of one run that nobody has seen yet: what check() returns and `plaudit run`
-- prints. Quiet backfill grants are inserted already seen, so they never enter this index.
CREATE INDEX IF NOT EXISTS user_badge_unseen_run_idx
    ON {{ schema }}.user_badge (run_id) WHERE seen_at IS NULL;

-- When a progress value lapses: a streak's current run counts until the start of the second
-- period after its last active one. NULL: never (counts, sums, ...).
ALTER TABLE {{ schema }}.user_progress ADD COLUMN IF NOT EXISTS expires_at timestamptz;

-- Rule grants a `revoke: true` backfill removed because the query no longer returns them.
ALTER TABLE {{ schema }}.run ADD COLUMN IF NOT EXISTS revoked int NOT NULL DEFAULT 0;

-- Every grant added or removed other than by a rule adding it: manual awards, manual
-- revocations and revocations by `revoke: true` rules, with who and why.
CREATE TABLE IF NOT EXISTS {{ schema }}.grant_log (
    user_id {{ user_id_type }} NOT NULL,
    log_id bigint GENERATED ALWAYS AS IDENTITY,
    badge text NOT NULL,
    level text NOT NULL,
    scope text NOT NULL,
    action text NOT NULL CHECK (action IN ('award', 'revoke')),
    -- the source of the grant awarded or revoked
    source text NOT NULL CHECK (source IN ('rule', 'manual')),
    reason text NOT NULL,
    achieved_at timestamptz,
    run_id bigint,
    logged_by text NOT NULL DEFAULT session_user,
    logged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, log_id)
);
CREATE INDEX IF NOT EXISTS grant_log_badge_idx ON {{ schema }}.grant_log (badge, logged_at);

-- Failed runs of the last day (`plaudit status`) and retention read run rows by time.
CREATE INDEX IF NOT EXISTS run_started_idx ON {{ schema }}.run (started_at);
