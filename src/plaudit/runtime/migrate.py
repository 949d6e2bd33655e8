"""What `init` does to a database: check the server, apply the pending migrations, re-create
the functions, views and triggers, and drop the ones the code no longer defines.

Two kinds of SQL files, because data and code evolve differently:

- `sql/migrations/NNNN_name.sql`: everything that holds data (tables, indexes, constraints,
  sequences, the meta row). Each is applied once, in version order, and recorded in
  `plaudit.migration` in the same transaction (the whole init is one transaction, under the
  init advisory lock), so a failed init leaves nothing half-applied. A database recording a
  migration this code does not know was upgraded by a newer plaudit: init refuses it.
- `sql/schema/NNN_name.sql`: functions, procedures, views and triggers, re-created by every
  init with CREATE OR REPLACE (which keeps their grants and the triggers and views using
  them). Routines and views of the plaudit schema that no file defines any more (an old
  signature, a removed function) are dropped after the files have run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from plaudit.errors import DatabaseError, SchemaTooNew, UnsupportedServer
from plaudit.runtime.citus import check_citus, distribute, is_distributed
from plaudit.runtime.db import Database, describe, render_sql
from plaudit.sqlfiles import migrations, schema_files

# The oldest PostgreSQL plaudit runs on: 14 brings CREATE OR REPLACE TRIGGER (sql/schema/).
# pyproject.toml and the README say so too.
MIN_POSTGRES_MAJOR = 14

# plaudit's routines and views of earlier versions that no schema file defines any more: init
# drops them. Only names plaudit defines now or defined once are ever dropped; a site's own
# functions and views in the schema are left alone. (A routine whose signature changes is an
# old overload of a current name: dropped, and its grants with it.)
RETIRED_ROUTINES = (
    "batch_rules", "enter_rule_role",  # before 0.1.0
    "job_run_rule", "process_events", "run_events",  # 0.1.0, replaced by plaudit.run_batch
)
RETIRED_VIEWS: tuple[str, ...] = ()
# the setting that marks a routine stale until a schema file re-creates it (sql/migrate.sql)
STALE_MARK = "plaudit: stale until init re-creates it"


def check_server_version(server_version_num: int) -> None:
    """Refuse a server older than MIN_POSTGRES_MAJOR (server_version_num: 150004 is 15.4)."""
    if server_version_num < MIN_POSTGRES_MAJOR * 10000:
        major = _major(server_version_num)
        raise UnsupportedServer(
            f"PostgreSQL {major} is too old for plaudit: it needs PostgreSQL "
            f"{MIN_POSTGRES_MAJOR} or newer (server_version_num {server_version_num})"
        )


def _major(num: int) -> str:
    """15 for 150004; 9.6 for 90624 (before 10, the major had two parts)."""
    return str(num // 10000) if num >= 100000 else f"{num // 10000}.{num // 100 % 100}"


@dataclass(frozen=True)
class Upgrade:
    """What an init changed: the migrations it applied and what of plaudit's it dropped."""

    applied: list[str]  # "0001_baseline"
    dropped: list[str]  # "function plaudit.process_events(integer)", "view plaudit.x"
    citus: bool = False  # the tables are placed on a Citus cluster


def upgrade(db: Database, user_id_type: str, citus: bool = False) -> Upgrade:
    """Bring db.schema to this code's schema, inside the caller's transaction (which holds
    the init lock). `citus`: place the tables on the Citus cluster (runtime/citus.py); a
    schema placed once stays Citus-shaped at every later init."""
    row = db.one("server_version_num")
    assert row is not None
    check_server_version(row["num"])
    if citus:
        check_citus(db)
    applied = apply_migrations(db, user_id_type)
    names = {m.version: f"{m.version:04d}_{m.name}" for m in migrations()}
    citus = citus or is_distributed(db)
    dropped = recreate_functions(db, user_id_type, citus)
    if citus:
        distribute(db, user_id_type)
    return Upgrade([names[v] for v in applied], dropped, citus)


def apply_migrations(db: Database, user_id_type: str) -> list[int]:
    db.execute("migration_table")
    recorded = {r["version"]: r["name"] for r in db.execute("applied_migrations")}
    known = migrations()
    unknown = sorted(set(recorded) - {m.version for m in known})
    if unknown:
        newest = known[-1] if known else None
        raise SchemaTooNew(
            f"schema {db.schema} has migration{'s' if len(unknown) > 1 else ''} "
            + ", ".join(f"{v:04d} ({recorded[v]})" for v in unknown)
            + ", which this plaudit does not know (it knows up to "
            + (f"{newest.version:04d} ({newest.name})" if newest else "none")
            + "): a newer plaudit upgraded this database; upgrade plaudit to use it"
        )
    done = []
    for migration in known:
        if migration.version in recorded:
            continue
        text = render_sql(migration.path.read_text(), db.schema, user_id_type=user_id_type)
        db.script(text, f"applying migration {migration.path.name}")
        db.execute("record_migration", [migration.version, migration.name])
        done.append(migration.version)
    return done


def recreate_functions(db: Database, user_id_type: str, citus: bool = False) -> list[str]:
    """Re-create the functions, views and triggers; drop plaudit's that no file defines any
    more. Returns what it dropped. `citus`: without what Citus cannot run (the files say)."""
    texts = [
        (path, render_sql(path.read_text(), db.schema, user_id_type=user_id_type,
                          citus=citus))
        for path in schema_files()
    ]
    routines: set[str] = set(RETIRED_ROUTINES)
    views: set[str] = set()
    for _, text in texts:
        routines.update(defined(text, db.schema, "FUNCTION|PROCEDURE"))
        views.update(defined(text, db.schema, "VIEW"))
    # Mark plaudit's routines with a setting no schema file gives: CREATE OR REPLACE resets a
    # routine's settings (and keeps its owner, its grants and the triggers and views using
    # it), so those still marked after the files have run are no file's any more.
    for row in db.execute("plaudit_routines", [sorted(routines)]):
        statement = sql.SQL("ALTER ROUTINE {} SET application_name = {}").format(
            sql.SQL(row["routine"]), sql.Literal(STALE_MARK))
        try:
            db.conn.execute(statement)
        except psycopg.Error as exc:
            raise DatabaseError(f"marking {row['routine']}: {describe(exc)}") from exc
    for path, text in texts:
        db.script(text, f"applying {path.name}")
    dropped: list[str] = []
    # views first: a stale view may use a stale function
    for row in db.execute("stale_views", [sorted(views), sorted(RETIRED_VIEWS)]):
        statement = sql.SQL("DROP VIEW {}").format(sql.Identifier(db.schema, row["name"]))
        try:
            db.conn.execute(statement)
        except psycopg.Error as exc:
            raise DatabaseError(f"dropping view {row['name']}: {describe(exc)}") from exc
        dropped.append(f"view {db.schema}.{row['name']}")
    for row in db.execute("stale_routines"):
        statement = sql.SQL(f"DROP {row['kind']} {{}}").format(sql.SQL(row["routine"]))
        try:
            db.conn.execute(statement)
        except psycopg.Error as exc:
            raise DatabaseError(f"dropping {row['routine']}: {describe(exc)}") from exc
        dropped.append(f"{row['kind'].lower()} {row['routine']}")
    return dropped


def defined(text: str, schema: str, kinds: str) -> set[str]:
    """The names of the objects (`kinds`: "VIEW", "FUNCTION|PROCEDURE") a rendered schema
    file creates in `schema`."""
    pattern = rf"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:{kinds})\s+{re.escape(schema)}\.(\w+)"
    return {name.lower() for name in re.findall(pattern, text, re.IGNORECASE)}
