"""`plaudit deliver`: the outbox posted to plaudit.yaml's webhooks, at least once.

A batch is one transaction: take up to N messages (plaudit.take_deliveries: each a user's
due rows for one endpoint, locked FOR UPDATE SKIP LOCKED, so deliverers running at once take
disjoint ones), POST them, record what each endpoint answered (plaudit.finish_deliveries:
2xx delivered, anything else retried later, or a dead letter once too old), commit. A
deliverer killed in the middle of a batch rolls the whole batch back: its rows are pending
again and are sent again, so a receiver may see a notice twice (it deduplicates on the
notice's id) and never misses one.

The HTTP requests of a batch run side by side (PARALLEL at a time), so that a slow endpoint
costs a batch one timeout rather than one per message; the transaction stays open meanwhile,
holding the batch's rows (bounded by --batch-size and the timeout).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg

from plaudit.errors import ConfigError, DatabaseError
from plaudit.model.webhooks import Endpoint, Webhooks, seconds
from plaudit.runtime.db import describe
from plaudit.runtime.engine import Engine
from plaudit.runtime.rows import OutboxWebhook
from plaudit.runtime.runner import Stoppable
from plaudit.runtime.webhook import Message, Outcome, post

# requests in flight at once within a batch
PARALLEL = 8
# `--follow` without a wake-up: look at the outbox this often anyway (rows that came due after
# a backoff, wake-ups lost with a dropped connection)
IDLE_RECHECK_SECONDS = 30.0
# rows due but held by another deliverer: look again this soon, not in a busy loop
MIN_WAIT_SECONDS = 0.25


@dataclass(frozen=True)
class DeliveryBatch:
    outcomes: list[Outcome]  # one per message sent
    delivered: int  # outbox rows delivered, to an endpoint each
    retrying: int  # rows that failed and will be tried again
    dead: int  # rows that failed once too old: dead letters
    seconds: float


def select_endpoints(webhooks: Webhooks | None, wanted: Sequence[str]) -> list[Endpoint]:
    """The endpoints --webhook names (by name or URL), or all of plaudit.yaml's. An endpoint
    must be in plaudit.yaml: the outbox fans out to the deployed ones only, so one given on
    the command line alone would never have anything queued for it."""
    if webhooks is None or not webhooks.endpoints:
        raise ConfigError(
            "plaudit.yaml configures no webhooks: add a webhooks: section with its endpoints "
            "(docs/configuration.md, Webhooks), then run `plaudit deploy`")
    chosen: list[Endpoint] = []
    for item in wanted:
        found = [e for e in webhooks.endpoints if item in (e.name, e.url)]
        if not found:
            known = ", ".join(f"{e.name} ({e.url})" for e in webhooks.endpoints)
            raise ConfigError(
                f"--webhook {item}: no endpoint of plaudit.yaml's webhooks: has this name or URL "
                f"(configured: {known}); add it there and run `plaudit deploy`, so that "
                "notices are queued for it")
        chosen += [e for e in found if e not in chosen]
    return chosen or list(webhooks.endpoints)


def check_deployed(engine: Engine, webhooks: Webhooks) -> None:
    """plaudit.yaml's endpoints are the ones deployed (the outbox fans out to those): else
    say to deploy, rather than deliver to a set that the database does not queue for."""
    deployed = {r["name"]: r for r in engine.db.execute("deployed_webhooks")}
    wanted = {w["name"]: w for w in webhooks.as_json()}
    differ = sorted(
        name for name in set(deployed) | set(wanted)
        if name not in deployed or name not in wanted
        or (deployed[name]["url"], deployed[name]["badges"], deployed[name]["tags"])
        != (wanted[name]["url"], wanted[name]["badges"], wanted[name]["tags"]))
    if differ:
        raise ConfigError(
            f"plaudit.yaml's webhooks differ from the deployed ones ({', '.join(differ)}): "
            "run `plaudit deploy`")


def messages(rows: Sequence[dict[str, Any]]) -> list[Message]:
    """take_deliveries' rows as messages: one per endpoint and user, in the order taken."""
    grouped: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["webhook"], row["user_id"]), []).append(row)
    return [Message(webhook, user, group) for (webhook, user), group in grouped.items()]


class Deliverer(Stoppable):
    """Delivers batches until nothing is due, or forever with `follow`; signals stop it
    between batches."""

    def __init__(
        self,
        engine: Engine,
        webhooks: Webhooks,
        endpoints: Sequence[Endpoint],
        batch_size: int = 100,
        on_batch: Callable[[DeliveryBatch], None] | None = None,
    ):
        super().__init__()
        self.engine = engine
        self.webhooks = webhooks
        self.endpoints = {e.name: e for e in endpoints}
        self.secrets = {e.name: e.key() for e in endpoints}  # a missing one fails here
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.client = httpx.Client(timeout=seconds(webhooks.timeout))

    def close(self) -> None:
        self.client.close()

    def batch(self) -> DeliveryBatch:
        """Take, post and record one batch, in one transaction."""
        try:
            return self._batch()
        except psycopg.Error as exc:  # the connection, mostly: the batch rolled back with it
            raise DatabaseError(f"delivering a batch: {describe(exc)}") from exc

    def _batch(self) -> DeliveryBatch:
        db = self.engine.db
        started = time.monotonic()
        config = self.webhooks
        with db.conn.transaction():
            rows = db.execute(
                "take_deliveries", [list(self.endpoints), self.batch_size, config.max_per_hour])
            outcomes = self._post(messages(rows))
            results = [
                {"webhook": o.message.webhook, "user_id": row["user_id"],
                 "notice_id": row["notice_id"], "message_id": o.message.message_id,
                 "ok": o.ok, "error": o.error}
                for o in outcomes for row in o.message.rows
            ]
            counts: dict[str, Any] = {"delivered": 0, "retrying": 0, "dead": 0}
            if results:
                counts = db.one("finish_deliveries", [
                    json.dumps(results, default=str), config.retry_first, config.retry_max,
                    config.give_up_after]) or counts
        return DeliveryBatch(outcomes, int(counts["delivered"]), int(counts["retrying"]),
                             int(counts["dead"]), time.monotonic() - started)

    def _post(self, batch: list[Message]) -> list[Outcome]:
        if not batch:
            return []

        def send(message: Message) -> Outcome:
            endpoint = self.endpoints[message.webhook]
            return post(self.client, endpoint.url, self.secrets[message.webhook], message)

        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(batch))) as pool:
            return list(pool.map(send, batch))

    def drain(self) -> None:
        """Deliver batches until one comes back short of the batch size (or a stop)."""
        while not self.stopping:
            self._busy = True
            try:
                result = self.batch()
            finally:
                self._busy = False
            if result.outcomes and self.on_batch:
                self.on_batch(result)
            if len(result.outcomes) < self.batch_size:
                return

    def follow(
        self, listener: psycopg.Connection[Any], on_idle: Callable[[], None] | None = None
    ) -> None:
        """Drain, then sleep until the outbox gains rows (LISTEN, on `listener`, a second
        connection) or the next row comes due (a coalescing window, a backoff); repeat until
        stopped."""
        listener.execute(self.engine.db.sql("listen_outbox"))
        try:
            while not self.stopping:
                self.drain()
                if self.stopping:
                    return
                if on_idle:
                    on_idle()
                row = self.engine.db.one("next_delivery", [list(self.endpoints)])
                due = row["seconds"] if row else None
                wait = IDLE_RECHECK_SECONDS if due is None else min(due, IDLE_RECHECK_SECONDS)
                for _ in listener.notifies(timeout=max(wait, MIN_WAIT_SECONDS), stop_after=1):
                    pass
        except KeyboardInterrupt:
            self.stopping = True
        except psycopg.Error as exc:  # a lost connection ends it: systemd restarts it
            raise DatabaseError(f"waiting for notices: {describe(exc)}") from exc


def retry_dead(engine: Engine, endpoints: Sequence[Endpoint]) -> int:
    """Make the dead letters of these endpoints pending again, due now; returns how many."""
    with engine.db.conn.transaction():
        row = engine.db.one("retry_dead", [[e.name for e in endpoints]])
    assert row is not None
    return int(row["revived"])


# -- plaudit status, plaudit schedule --------------------------------------------------------


@dataclass
class OutboxStatus:
    """The outbox as `plaudit status` shows it: per endpoint, what waits and what gave up."""

    webhooks: list[OutboxWebhook] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return sum(w["pending"] for w in self.webhooks)

    @property
    def dead(self) -> int:
        return sum(w["dead"] for w in self.webhooks)

    @property
    def oldest_seconds(self) -> float | None:
        ages = [w["oldest_pending_seconds"] for w in self.webhooks
                if w["oldest_pending_seconds"] is not None]
        return max(ages) if ages else None

    def as_json(self) -> dict[str, Any]:
        return {"pending": self.pending, "oldest_pending_seconds": self.oldest_seconds,
                "dead": self.dead, "webhooks": [dict(w) for w in self.webhooks]}

    def dead_sentence(self) -> str | None:
        """The attention line for dead letters, or None."""
        if not self.dead:
            return None
        where = ", ".join(f"{w['webhook']}: {w['dead']:,}" for w in self.webhooks if w["dead"])
        return (
            f"{self.dead:,} dead letter{'s' if self.dead != 1 else ''} ({where}): delivery "
            "gave up on them (webhooks.retry.give_up_after); once the endpoint is fixed, "
            "`plaudit deliver --retry-dead` sends them again")


def outbox_status(engine: Engine) -> OutboxStatus:
    return OutboxStatus(cast("list[OutboxWebhook]", engine.db.execute("outbox_status")))


def cron_line(project_dir: Path) -> str:
    """The crontab line that delivers every minute from this project."""
    return f"* * * * *  cd {shlex.quote(str(project_dir))} && plaudit deliver"
