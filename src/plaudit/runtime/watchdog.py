"""The deadline of each rule run inside a batch statement, enforced from outside it.

PostgreSQL arms statement_timeout once per top-level statement, so one statement running a
batch's rules (`plaudit.run_batch`) cannot time-limit each rule itself. Each rule publishes its
deadline in its session's application_name (`plaudit.run_timed`); a watchdog cancels the
session's current statement once a deadline has passed (`plaudit.job_watchdog`). In pg_cron
that is the watchdog job, every minute; for `plaudit run` it is this thread, polling its own
session from a second connection while a batch runs. The cancelled rule is recorded as failed
and marked dirty; the batch goes on with the next rule.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from plaudit.runtime.db import Database, connect

POLL_SECONDS = 0.05


class Watchdog:
    """Watches one session (`pid`) through its own connection, opened on first use."""

    def __init__(self, dsn: str, schema: str, pid: int):
        self.dsn = dsn
        self.schema = schema
        self.pid = pid
        self._db: Database | None = None

    @contextmanager
    def watching(self) -> Iterator[None]:
        """While active, the session's rule runs are cancelled past their deadlines."""
        if self._db is None:
            self._db = Database(connect(self.dsn), self.schema)
        stop = threading.Event()
        thread = threading.Thread(target=self._poll, args=(self._db, stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _poll(self, db: Database, stop: threading.Event) -> None:
        while not stop.wait(POLL_SECONDS):
            try:
                db.execute("watchdog", [self.pid])
            except Exception:  # a lost watchdog connection must not break the batch
                self._drop(db.conn)
                return

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()
        self._db = None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
