"""plaudit on a Citus cluster (docs/citus.md): `plaudit init --citus` places plaudit's tables
(sql/citus/distribute.sql) and every later init keeps the schema Citus-shaped (no triggers
Citus cannot run on distributed tables: the leaderboard scores'); rule runs decide per rule
whether a complete backfill runs on the workers (sql/schema/013_citus.sql).
"""

from __future__ import annotations

from plaudit.errors import UnsupportedServer
from plaudit.runtime.db import Database, render_sql
from plaudit.sqlfiles import sql_dir

# what `init` says on Citus: the features that do not work there, plainly
CITUS_NOTE = (
    "citus: user_badge, user_progress and suppressed_grant are distributed by user_id, "
    "co-located; the other tables stay on the coordinator. Not on Citus: leaderboard scores "
    "(no score triggers on distributed tables: `plaudit leaderboard` shows nothing new) and "
    "`events:` capture triggers on distributed app tables (call plaudit.track() instead). "
    "docs/citus.md")


def is_distributed(db: Database) -> bool:
    """Whether plaudit's tables in this database are distributed (an earlier init --citus)."""
    installed = db.one("citus_installed")
    if not (installed and installed["installed"]):
        return False
    row = db.one("citus_distributed")
    return bool(row and row["distributed"])


def check_citus(db: Database) -> None:
    """`init --citus` needs the citus extension in this database."""
    row = db.one("citus_installed")
    if not (row and row["installed"]):
        raise UnsupportedServer(
            "init --citus: this database has no citus extension; run CREATE EXTENSION citus "
            "on the coordinator (and add the workers with citus_add_node), or drop --citus "
            "(`plaudit db start --citus 2` starts a local Citus cluster)")


def distribute(db: Database, user_id_type: str) -> None:
    """Place plaudit's tables on the cluster (distributed, reference or coordinator-local):
    a table already placed is left as it is."""
    path = sql_dir() / "citus" / "distribute.sql"
    db.script(render_sql(path.read_text(), db.schema, user_id_type=user_id_type),
              f"applying {path.name}")


def placement(db: Database) -> dict[str, str]:
    """{table: "distributed by user_id" | "reference" | "coordinator ..."}."""
    return {r["table_name"]: r["placement"] for r in db.execute("citus_placement")}
