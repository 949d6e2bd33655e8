"""The deadline of each rule run inside a batch statement, enforced from outside it.

PostgreSQL arms statement_timeout once per top-level statement, so one statement running a
batch's rules (`plaudit.run_batch`) cannot time-limit each rule itself. Each rule publishes its
deadline in its session's application_name (`plaudit.run_timed`); a watchdog cancels the
session's current statement once a deadline has passed. In pg_cron that is the watchdog job,
every minute (`plaudit.job_watchdog`); for `plaudit run` it is this thread, polling its own
session from a second connection while a batch runs (`plaudit.watch_session`), and cancelling
each deadline once. The cancelled rule is recorded as failed and marked dirty; the batch goes
on with the next rule.

Without a watchdog connection (it cannot connect: a connection limit, say) a batch still
runs, its rules bounded only by the session's statement_timeout; `unwatched` says why, and
the next batch tries to connect again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from plaudit.errors import PlauditError
from plaudit.runtime.db import Database, connect

POLL_SECONDS = 0.05
# the watchdog's own queries: a stuck one must not hold up the batch it watches for long
QUERY_TIMEOUT = "2s"


class Watchdog:
    """Watches one session (`pid`) through its own connection, opened on first use."""

    def __init__(self, dsn: str, schema: str, pid: int):
        self.dsn = dsn
        self.schema = schema
        self.pid = pid
        self.unwatched: str | None = None  # why the last batch ran without a watchdog
        self._db: Database | None = None

    @contextmanager
    def watching(self) -> Iterator[None]:
        """While active, the session's rule runs are cancelled past their deadlines."""
        db = self._connect()
        if db is None:
            yield
            return
        stop = threading.Event()
        thread = threading.Thread(target=self._poll, args=(db, stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _connect(self) -> Database | None:
        if self._db is None:
            try:
                conn = connect(self.dsn)
                conn.execute("SELECT set_config('statement_timeout', $1, false)", [QUERY_TIMEOUT])
            except (PlauditError, psycopg.Error) as exc:
                self.unwatched = f"no watchdog connection: {exc}"
                return None
            self._db = Database(conn, self.schema)
        self.unwatched = None
        return self._db

    def _poll(self, db: Database, stop: threading.Event) -> None:
        cancelled: str | None = None
        while not stop.wait(POLL_SECONDS):
            try:
                row = db.one("watchdog", [self.pid, cancelled])
            except PlauditError as exc:  # the batch goes on unwatched; the next one reconnects
                self.unwatched = f"the watchdog connection failed: {exc}"
                self.close()
                return
            if row is not None and row["cancelled"] is not None:
                cancelled = row["cancelled"]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
