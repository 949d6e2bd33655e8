"""The demo community app: its tables and data, generated inside the database."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from plaudit.errors import ConfigError
from plaudit.runtime.db import Database
from plaudit.runtime.engine import Engine
from plaudit.runtime.runner import run_batch
from plaudit.sqlfiles import sql_dir


def reset_schema(db: Database) -> None:
    """Drop plaudit's schema and the capture triggers on the demo tables (the old schema's
    triggers would turn the bulk load into events), in a demo database only: checked first,
    so that a database that is not the demo's loses nothing."""
    refuse_foreign(db)
    db.execute("demo_reset_schema")


def refuse_foreign(db: Database) -> None:
    """Refuse a database that is not the demo's: one with a `users` table the demo did not
    create (the demo truncates its tables), or a plaudit schema without the demo's tables
    (the demo drops the schema, and a site's grants with it)."""
    row = db.one("demo_tables_foreign")
    if row is None:
        return
    raise ConfigError(
        f"this database is not the demo's ({row['reason']}); the demo replaces its tables "
        "and plaudit's schema, so run it on the embedded cluster (no --dsn) or an empty "
        "database"
    )


def showcase_user(db: Database) -> str | None:
    """The demo user whose trophy case the demo shows."""
    row = db.one("demo_showcase_user")
    return None if row is None else str(row["user_id"])


def load_demo_data(db: Database, users: int, activities: int) -> dict[str, int]:
    """Create the demo app's tables and fill them: {table: rows}. Deterministic."""
    refuse_foreign(db)
    with db.conn.transaction():
        for name in ("schema.sql", "generate.sql", "live.sql"):
            db.script((sql_dir() / "demo" / name).read_text(), f"demo/{name}")
        rows = db.execute("demo_generate", [users, activities])
    return {row["table_name"]: row["row_count"] for row in rows}


def stream_live_events(
    engine: Engine,
    listener: psycopg.Connection[Any],
    rounds: int,
    say: Callable[[str], None],
) -> tuple[int, int, int]:
    """Write live rows to the demo tables, run each round's events incrementally and pass
    the notifications to `say` as they arrive: (events, grants, notifications)."""
    # LISTEN takes an identifier, not a parameter; the channel name is validated config
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(engine.config.notify_channel)))
    events = granted = notified = 0
    for _ in range(rounds):
        with engine.db.conn.transaction():
            engine.db.execute("demo_live_activity")
        result = run_batch(engine, 1000)
        events += result.events
        granted += result.granted
        for note in listener.notifies(timeout=0.2):
            notified += 1
            say(f"  {note.channel}: {note.payload}")
        time.sleep(0.1)
    return events, granted, notified
