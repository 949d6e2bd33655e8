"""Consuming the event queue: `plaudit run`, once or following new events.

A batch is one transaction: take the events (`plaudit.take_events`, SKIP LOCKED), run each
rule they trigger in incremental mode (`plaudit.run_batch`, the event loop the events job
and check() run too), commit. The grants and the consumption of the events commit together,
so every event is processed exactly once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, cast

import psycopg

from plaudit.errors import DatabaseError, PlauditError, SchemaMissing
from plaudit.runtime.db import describe
from plaudit.runtime.engine import Engine, RunResult
from plaudit.runtime.rows import NewGrant

# Without a notification, re-check the queue this often anyway: events released by a runner
# that rolled back, or any wake-up lost with a dropped connection, are picked up then.
IDLE_RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class BatchResult:
    events: int
    runs: list[RunResult]
    grants: list[NewGrant]  # the new grants, in the order they were made
    seconds: float

    @property
    def failed(self) -> list[RunResult]:
        return [run for run in self.runs if run.status == "failed"]

    @property
    def granted(self) -> int:
        return sum(run.granted for run in self.runs)

    @property
    def moved(self) -> int:
        """Grants moved to an earlier date (late events): reported, not notified."""
        return sum(run.moved for run in self.runs)


def run_batch(engine: Engine, batch_size: int) -> BatchResult:
    """Take up to `batch_size` pending events and run the rules they trigger, in one
    transaction. A failing rule is recorded and marked dirty; the others still commit."""
    db = engine.db
    started = time.monotonic()
    runs: list[RunResult] = []
    grants: list[NewGrant] = []
    try:
        with db.conn.transaction():
            taken = db.one("take_events", [batch_size])
            events = int(taken["events"]) if taken else 0
            if events:
                runs = engine.run_batch_rules()
                new = [run.run_id for run in runs if run.granted]
                if new:
                    grants = cast("list[NewGrant]", db.execute("run_grants", [new]))
    except SchemaMissing:
        raise  # says what to do; no batch ever started
    except (psycopg.Error, DatabaseError) as exc:
        # the transaction is gone, and nothing of the batch with it: its events stay queued
        reason = describe(exc) if isinstance(exc, psycopg.Error) else str(exc)
        raise DatabaseError(f"processing a batch of events: {reason}") from exc
    return BatchResult(events, runs, grants, time.monotonic() - started)


# `run --follow` outlives server restarts: the wait between attempts to reconnect doubles
# from the first to the last.
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 30.0


def _lost(*conns: psycopg.Connection[Any]) -> bool:
    """Whether one of the connections is gone (as opposed to a query that failed)."""
    return any(conn.closed or conn.broken for conn in conns)


def _reason(exc: BaseException) -> str:
    """The first line of an error: the server's reason, without libpq's repetitions."""
    cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
    text = describe(cause) if isinstance(cause, psycopg.Error) else str(cause)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return first.removeprefix("consuming input failed: ")


def _quiet(message: str) -> None:
    pass


class Stoppable:
    """A loop of batches that SIGINT and SIGTERM stop between batches: a signal during a
    batch lets the batch finish and commit first (`run`, `deliver`)."""

    def __init__(self) -> None:
        self.stopping = False
        self._busy = False

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped, a little at a time; False when stopped."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return not self.stopping

    @contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """While active, SIGINT/SIGTERM end the run between batches (main thread only:
        Python delivers signals there)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.stopping = True
            if not self._busy:
                raise KeyboardInterrupt

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        except KeyboardInterrupt:
            self.stopping = True
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class Runner(Stoppable):
    """Runs batches until the queue is empty, or forever with `follow`; signals stop it
    between batches (Stoppable).
    """

    def __init__(
        self,
        engine: Engine,
        batch_size: int = 1000,
        on_batch: Callable[[BatchResult], None] | None = None,
    ):
        super().__init__()
        self.engine = engine
        self.batch_size = batch_size
        self.on_batch = on_batch

    def drain(self) -> None:
        """Process batches until one comes back short of `batch_size` (or a stop)."""
        while not self.stopping:
            self._busy = True
            try:
                result = run_batch(self.engine, self.batch_size)
            finally:
                self._busy = False
            if result.events and self.on_batch:
                self.on_batch(result)
            if result.events < self.batch_size:
                return

    def follow(
        self,
        listener: psycopg.Connection[Any],
        on_idle: Callable[[], None] | None = None,
        reconnect: Callable[[], psycopg.Connection[Any]] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        """Drain, then sleep on LISTEN until new events arrive; repeat until stopped.

        `listener` is a second connection, used only to wait: notifications that arrive
        while a connection runs queries would be consumed by those queries.

        With `reconnect` (it opens a new connection), a lost connection (a server restart, a
        terminated backend) does not end the run: both connections are replaced, retrying
        with exponential backoff, and `on_lost` hears of every attempt. A batch cut off by
        the loss rolled back with its connection, so its events are still queued. Without
        `reconnect`, the error ends the run.
        """
        replaced: list[psycopg.Connection[Any]] = []  # listeners opened here, closed here
        try:
            while not self.stopping:
                try:
                    self._follow(listener, on_idle)
                    return
                except (psycopg.Error, DatabaseError) as exc:
                    if reconnect is None or not _lost(self.engine.db.conn, listener):
                        raise
                    new = self._reconnect(reconnect, on_lost or _quiet, _reason(exc))
                    if new is None:
                        return
                    replaced.append(listener := new)
        except KeyboardInterrupt:
            self.stopping = True
        finally:
            for conn in replaced:
                conn.close()

    def _follow(
        self, listener: psycopg.Connection[Any], on_idle: Callable[[], None] | None
    ) -> None:
        listener.execute(self.engine.db.sql("listen_events"))
        while not self.stopping:
            self.drain()
            if self.stopping:
                return
            if on_idle:
                on_idle()
            for _ in listener.notifies(timeout=IDLE_RECHECK_SECONDS, stop_after=1):
                pass

    def _reconnect(
        self,
        reconnect: Callable[[], psycopg.Connection[Any]],
        on_lost: Callable[[str], None],
        reason: str,
    ) -> psycopg.Connection[Any] | None:
        """New connections for the engine and the listener, or None once stopped."""
        delay = RECONNECT_FIRST_SECONDS
        on_lost(f"connection lost: {reason}; reconnecting in {delay:g}s")
        while self._sleep(delay):
            conn = listener = None
            try:
                conn = reconnect()
                listener = reconnect()
            except (psycopg.Error, PlauditError) as exc:
                if conn is not None:
                    conn.close()
                if self.stopping:
                    break
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                on_lost(f"reconnecting failed: {_reason(exc)}; trying again in {delay:g}s")
                continue
            self.engine.reconnect(conn)
            on_lost("reconnected")
            return listener
        return None
