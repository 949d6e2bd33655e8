-- plaudit tables. Re-runnable: every statement is IF NOT EXISTS, so `plaudit init` also
-- upgrades an older schema (later changes are added as ALTER ... ADD COLUMN IF NOT EXISTS).
-- Rendered with Jinja: {{ schema }} is the configured schema, {{ user_id_type }} the user id
-- type. Every key of a per-user table leads with user_id so the tables can be distributed by
-- user on Citus.

CREATE SCHEMA IF NOT EXISTS {{ schema }};

CREATE TABLE IF NOT EXISTS {{ schema }}.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

-- The user id type is fixed at the first init: a different configured type would need a
-- data migration, not an upgrade.
INSERT INTO {{ schema }}.meta (key, value) VALUES ('user_id_type', '{{ user_id_type }}')
ON CONFLICT (key) DO NOTHING;
DO $$
DECLARE
    v_created text := (SELECT value FROM {{ schema }}.meta WHERE key = 'user_id_type');
BEGIN
    IF v_created <> '{{ user_id_type }}' THEN
        RAISE EXCEPTION 'plaudit.yaml says user_id_type: {{ user_id_type }}, but schema {{ schema }} was created with %', v_created
            USING HINT = 'changing the user id type needs a data migration; set user_id_type back to ' || v_created;
    END IF;
END
$$;

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
