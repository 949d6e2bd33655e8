-- Notifications that are never lost (issue 17): the outbox's fan-out to the webhooks, what a
-- deliverer (`plaudit deliver`, src/plaudit/runtime/delivery.py) takes and records, dead
-- letters and retention. The tables are in sql/migrations/0005_outbox.sql. Rendered with
-- {{ schema }} and {{ user_id_type }} like the other schema files; re-created by every init.
--
-- Who writes the outbox: run_rule (002_run_rule.sql) for the grants it notifies, award_badge
-- and revoke_badge (005_grants.sql), revoke_stale for an announced backfill's revocations,
-- each with one INSERT ... SELECT per statement, in the transaction that grants, and only
-- while a webhook is configured (nothing else would ever read the rows).

-- Fan-out: each new outbox row is due to every endpoint that takes its badge, after the
-- endpoint's coalescing window. One statement per inserting statement; then one wake-up for
-- `plaudit deliver --follow` (LISTEN {{ schema }}_outbox), sent on commit.
CREATE OR REPLACE FUNCTION {{ schema }}.outbox_added() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    INSERT INTO {{ schema }}.delivery (user_id, notice_id, webhook, due_at, queued_at)
    SELECT n.user_id, n.notice_id, w.name, n.created_at + w.coalesce_window, n.created_at
    FROM added_notices AS n
    JOIN {{ schema }}.webhook AS w
      ON w.badges = '{}' AND w.tags = '{}' OR n.badge = ANY (w.badges)
         OR w.tags && coalesce((SELECT b.tags FROM {{ schema }}.badge AS b
                                WHERE b.slug = n.badge), '{}');
    PERFORM pg_notify('{{ schema }}_outbox', '');
    RETURN NULL;
END;
$function$;

CREATE OR REPLACE TRIGGER outbox_added AFTER INSERT ON {{ schema }}.outbox
    REFERENCING NEW TABLE AS added_notices
    FOR EACH STATEMENT EXECUTE FUNCTION {{ schema }}.outbox_added();

-- `deploy`: the endpoints of plaudit.yaml's `webhooks:` ([{name, url, badges, tags,
-- coalesce}], coalesce a duration like 5s). An endpoint no longer configured goes, with its
-- undelivered rows; a changed one keeps them.
CREATE OR REPLACE FUNCTION {{ schema }}.sync_webhooks(p_webhooks jsonb) RETURNS void
LANGUAGE sql AS $function$
    DELETE FROM {{ schema }}.webhook AS w
    WHERE NOT EXISTS (SELECT FROM jsonb_array_elements(coalesce(p_webhooks, '[]')) AS e
                      WHERE e ->> 'name' = w.name);
    INSERT INTO {{ schema }}.webhook AS w (name, url, badges, tags, coalesce_window)
    SELECT e ->> 'name', e ->> 'url',
           ARRAY(SELECT jsonb_array_elements_text(coalesce(e -> 'badges', '[]'))),
           ARRAY(SELECT jsonb_array_elements_text(coalesce(e -> 'tags', '[]'))),
           {{ schema }}.timeout_interval(coalesce(e ->> 'coalesce', '0'))
    FROM jsonb_array_elements(coalesce(p_webhooks, '[]')) AS e
    ON CONFLICT (name) DO UPDATE
        SET url = excluded.url, badges = excluded.badges, tags = excluded.tags,
            coalesce_window = excluded.coalesce_window, deployed_at = now()
        WHERE (w.url, w.badges, w.tags, w.coalesce_window)
              IS DISTINCT FROM (excluded.url, excluded.badges, excluded.tags,
                                excluded.coalesce_window);
$function$;

-- A deliverer's batch: up to p_messages messages, each a user's pending rows for one of the
-- endpoints p_webhooks, taken when the earliest of them is due, oldest first. Rows are
-- locked FOR UPDATE SKIP LOCKED, and each (endpoint, user) by a transaction advisory lock,
-- so that concurrent deliverers take disjoint messages and never split a user's. A user who
-- was sent p_per_hour messages in the last hour by an endpoint waits until the oldest of
-- them is an hour old: their rows are due then, and fold into that message.
CREATE OR REPLACE FUNCTION {{ schema }}.take_deliveries(
    p_webhooks text[],
    p_messages int,
    p_per_hour int DEFAULT NULL
) RETURNS TABLE (webhook text, user_id {{ user_id_type }}, notice_id uuid, action text,
                 badge text, level text, scope text, "position" int, notice jsonb,
                 attempts int, created_at timestamptz)
LANGUAGE plpgsql AS $function$
DECLARE
    v_group record;
    v_taken int := 0;
    v_sent int;
    v_oldest timestamptz;
BEGIN
    FOR v_group IN
        SELECT d.webhook, d.user_id
        FROM {{ schema }}.delivery AS d
        WHERE d.status = 'pending' AND d.webhook = ANY (p_webhooks) AND d.due_at <= now()
        GROUP BY d.webhook, d.user_id
        ORDER BY min(d.due_at), d.webhook, d.user_id
    LOOP
        EXIT WHEN v_taken >= p_messages;
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(
            hashtext('{{ schema }}.delivery'), hashtext(v_group.webhook || ':' || v_group.user_id));
        IF coalesce(p_per_hour, 0) > 0 THEN
            SELECT count(DISTINCT s.message_id), min(s.delivered_at) INTO v_sent, v_oldest
            FROM {{ schema }}.delivery AS s
            WHERE s.webhook = v_group.webhook AND s.user_id = v_group.user_id
              AND s.status = 'delivered' AND s.delivered_at > now() - interval '1 hour';
            IF v_sent >= p_per_hour THEN
                UPDATE {{ schema }}.delivery AS d SET due_at = v_oldest + interval '1 hour'
                WHERE d.webhook = v_group.webhook AND d.user_id = v_group.user_id
                  AND d.status = 'pending';
                CONTINUE;
            END IF;
        END IF;
        RETURN QUERY
        SELECT d.webhook, d.user_id, d.notice_id, o.action, o.badge, o.level, o.scope,
               o.position, o.notice, d.attempts, o.created_at
        FROM {{ schema }}.delivery AS d
        JOIN {{ schema }}.outbox AS o ON o.user_id = d.user_id AND o.notice_id = d.notice_id
        WHERE d.webhook = v_group.webhook AND d.user_id = v_group.user_id
          AND d.status = 'pending'
        FOR UPDATE OF d SKIP LOCKED;
        IF FOUND THEN
            v_taken := v_taken + 1;
        END IF;
    END LOOP;
END;
$function$;

-- What the deliverer's requests did, one element per row it sent: [{webhook, user_id,
-- notice_id, message_id, ok, error}]. A row answered 2xx is delivered; any other is due again
-- after an exponential backoff (p_first, doubling per attempt, at most p_max) with jitter
-- (half of it random, so that rows failing together do not come back together), unless it
-- has been tried for p_give_up already: then it is a dead letter. Returns the counts.
CREATE OR REPLACE FUNCTION {{ schema }}.finish_deliveries(
    p_results jsonb,
    p_first interval,
    p_max interval,
    p_give_up interval
) RETURNS TABLE (delivered int, retrying int, dead int)
LANGUAGE sql AS $function$
    WITH r AS (
        SELECT * FROM jsonb_to_recordset(p_results) AS r (
            webhook text, user_id {{ user_id_type }}, notice_id uuid, message_id uuid,
            ok boolean, error text)
    ),
    done AS (
        UPDATE {{ schema }}.delivery AS d
        SET status = CASE WHEN r.ok THEN 'delivered'
                          WHEN clock_timestamp() - d.queued_at >= p_give_up THEN 'dead'
                          ELSE 'pending' END,
            attempts = d.attempts + 1,
            delivered_at = CASE WHEN r.ok THEN clock_timestamp() END,
            message_id = CASE WHEN r.ok THEN r.message_id END,
            last_error = CASE WHEN r.ok THEN NULL ELSE left(r.error, 1000) END,
            due_at = CASE WHEN r.ok THEN d.due_at ELSE clock_timestamp()
                + least(p_max, p_first * power(2, least(d.attempts, 30)))
                  * (0.5 + random() / 2) END
        FROM r
        WHERE d.user_id = r.user_id AND d.notice_id = r.notice_id AND d.webhook = r.webhook
          AND d.status = 'pending'
        RETURNING d.status
    )
    SELECT count(*) FILTER (WHERE status = 'delivered')::int,
           count(*) FILTER (WHERE status = 'pending')::int,
           count(*) FILTER (WHERE status = 'dead')::int
    FROM done;
$function$;

-- `plaudit deliver --retry-dead`: the dead letters of these endpoints are pending again, due
-- now, their age counted afresh. Returns how many.
CREATE OR REPLACE FUNCTION {{ schema }}.retry_dead(p_webhooks text[]) RETURNS int
LANGUAGE sql AS $function$
    WITH revived AS (
        UPDATE {{ schema }}.delivery AS d
        SET status = 'pending', due_at = now(), queued_at = now(), attempts = 0
        WHERE d.status = 'dead' AND d.webhook = ANY (p_webhooks)
        RETURNING 1
    )
    SELECT count(*)::int FROM revived;
$function$;

-- Retention, like prune() for runs: outbox rows older than p_keep that every endpoint has
-- delivered (their delivery rows go with them). Pending rows and dead letters are kept, so
-- nothing undelivered is ever pruned. Returns the number of outbox rows deleted.
CREATE OR REPLACE FUNCTION {{ schema }}.prune_outbox(
    p_keep interval DEFAULT '{{ defaults.retention_outbox }}'
) RETURNS int
LANGUAGE sql AS $function$
    WITH gone AS (
        DELETE FROM {{ schema }}.outbox AS o
        WHERE o.created_at < now() - p_keep
          AND NOT EXISTS (SELECT FROM {{ schema }}.delivery AS d
                          WHERE d.user_id = o.user_id AND d.notice_id = o.notice_id
                            AND d.status <> 'delivered')
        RETURNING 1
    )
    SELECT count(*)::int FROM gone;
$function$;

-- as every plaudit function (008_boundary.sql): not PUBLIC's; the deliverer runs as plaudit's
-- owner, and no app role needs these
REVOKE EXECUTE ON FUNCTION {{ schema }}.outbox_added() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.sync_webhooks(jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.take_deliveries(text[], int, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.finish_deliveries(jsonb, interval, interval, interval)
    FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.retry_dead(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{ schema }}.prune_outbox(interval) FROM PUBLIC;
