-- Migration 0005: notifications that are never lost (issue 17). Rendered with {{ schema }}
-- and {{ user_id_type }} like every migration; applied once.
--
-- A NOTIFY reaches only the sessions listening at that moment. The outbox keeps what was
-- announced: every grant that is news (the ones NOTIFY announces) and every revocation that
-- is not quiet, written in the transaction that grants or revokes, so it commits (or rolls
-- back) with it. `plaudit deliver` posts it to the webhooks of plaudit.yaml, each endpoint on
-- its own (delivery), until each says 2xx. The functions are in sql/schema/012_outbox.sql.

-- The endpoints, synced from plaudit.yaml's `webhooks:` by deploy (plaudit.sync_webhooks):
-- what the outbox fans out to. Their secrets are not here: the deliverer reads them from
-- plaudit.yaml or the environment.
CREATE TABLE {{ schema }}.webhook (
    name text PRIMARY KEY,
    url text NOT NULL,
    -- what the endpoint receives: the badges listed, and the badges carrying a tag listed;
    -- both empty: every badge
    badges text[] NOT NULL DEFAULT '{}',
    tags text[] NOT NULL DEFAULT '{}',
    -- a notice waits this long for the user's next ones, to go in one message with them
    coalesce_window interval NOT NULL DEFAULT '0',
    deployed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per announced grant or revocation. notice_id is its stable id: the idempotency key
-- a receiver deduplicates on. Kept until delivered everywhere and older than the retention.
CREATE TABLE {{ schema }}.outbox (
    user_id {{ user_id_type }} NOT NULL,
    notice_id uuid NOT NULL DEFAULT gen_random_uuid(),
    action text NOT NULL CHECK (action IN ('grant', 'revoke')),
    badge text NOT NULL,
    level text NOT NULL,
    scope text NOT NULL,
    -- the level's place in its badge, when announced: messages list the highest first
    position int NOT NULL,
    -- what the receiver is told (plaudit.grant_notice: names, icon, points, achieved_at)
    notice jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, notice_id)
);
CREATE INDEX outbox_created_idx ON {{ schema }}.outbox (created_at);

-- Each outbox row's delivery to each endpoint that takes it: endpoints succeed, fail and give
-- up independently. A deliverer takes a user's pending rows for one endpoint together (one
-- message), due_at says when (the coalescing window, then the backoff after a failure).
CREATE TABLE {{ schema }}.delivery (
    user_id {{ user_id_type }} NOT NULL,
    notice_id uuid NOT NULL,
    webhook text NOT NULL REFERENCES {{ schema }}.webhook (name) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    due_at timestamptz NOT NULL,
    -- since when it has been tried (reset by `deliver --retry-dead`): past the configured
    -- age, a failure makes it a dead letter
    queued_at timestamptz NOT NULL DEFAULT now(),
    attempts int NOT NULL DEFAULT 0,
    last_error text,
    message_id uuid,  -- the message that delivered it
    delivered_at timestamptz,
    PRIMARY KEY (user_id, notice_id, webhook),
    FOREIGN KEY (user_id, notice_id) REFERENCES {{ schema }}.outbox (user_id, notice_id)
        ON DELETE CASCADE
);
-- the due rows of an endpoint, oldest first (what deliverers take)
CREATE INDEX delivery_due_idx ON {{ schema }}.delivery (webhook, due_at) WHERE status = 'pending';
-- a user's messages of the last hour to an endpoint (the rate limit)
CREATE INDEX delivery_sent_idx ON {{ schema }}.delivery (webhook, user_id, delivered_at)
    WHERE status = 'delivered';
CREATE INDEX delivery_dead_idx ON {{ schema }}.delivery (webhook) WHERE status = 'dead';
