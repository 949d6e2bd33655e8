"""The benchmark database: plaudit's connection conventions plus the harness's own SQL files.

bench/queries.sql holds the fixed queries (`-- name:` headers, parsed by plaudit's parser),
bench/functions.sql the helper functions, bench/baseline.sql the bare-query macro,
bench/handwritten.sql the hand-written baseline (bench/handwritten.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from plaudit.model.config import Config
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule
from plaudit.runtime.db import Database, connect, render_sql
from plaudit.sqlfiles import parse_queries
from plaudit.sqlgen.render import output_columns, render, render_query

BENCH_DIR = Path(__file__).resolve().parent


@cache
def _queries() -> dict[str, str]:
    return parse_queries((BENCH_DIR / "queries.sql").read_text())


@cache
def _macros() -> Any:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(BENCH_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return env.get_template("baseline.sql").module


def bare_sql(rule: Rule, config: Config, mode: Mode = "backfill") -> str:
    """The rule's own SELECT for `mode`, aggregated the plain way (bench/baseline.sql)."""
    query = render_query(rule, mode, config)
    columns = output_columns(rule, query) or ()
    thresholds = [lv.threshold for lv in rule.levels if lv.threshold is not None]
    lowest = min(thresholds) if thresholds else 1
    return str(_macros().bare(rule.kind, query, lowest, "scope" in columns)).strip()


def rows_sql(rule: Rule, config: Config) -> str:
    """The rule's backfill as plaudit.run_rule executes it, counted instead of written."""
    return str(_macros().rows_only(render(rule, "backfill", config).sql)).strip()


class BenchDB:
    """An autocommit connection to the benchmark database, with timed named queries."""

    def __init__(self, dsn: str, schema: str):
        self.dsn = dsn
        self.db = Database(connect(dsn), schema)

    def sql(self, name: str) -> str:
        return render_sql(_queries()[name], self.db.schema)

    def rows(self, name: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.db.conn.execute(self.sql(name), params)
        return cur.fetchall() if cur.description else []

    def one(self, name: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        rows = self.rows(name, params)
        assert rows, f"{name} returned no row"
        return rows[0]

    def script(self, name: str) -> None:
        """Run a named multi-statement query (no parameters)."""
        self.db.script(self.sql(name), f"bench/queries.sql: {name}")

    def timed(self, name: str, params: Sequence[Any] = ()) -> float:
        started = time.perf_counter()
        self.rows(name, params)
        return time.perf_counter() - started

    def timed_text(self, text: str, params: Sequence[Any] = ()) -> float:
        """Run a rendered query (a bare rule query) and return its wall time."""
        started = time.perf_counter()
        self.db.conn.execute(text, params).fetchall()
        return time.perf_counter() - started

    def timed_as_run_rule(self, text: str, params: Sequence[Any] = ()) -> float:
        """Like timed_text, with the settings plaudit.run_rule gives its queries."""
        with self.db.conn.transaction():
            self.rows("as_run_rule")
            return self.timed_text(text, params)

    def timed_transaction(self, text: str, params: Sequence[Any] = ()) -> float:
        """Run a rendered statement in a transaction of its own, with the settings
        plaudit.run_rule gives its queries; the wall time to its commit included."""
        started = time.perf_counter()
        with self.db.conn.transaction():
            self.rows("as_run_rule")
            self.db.conn.execute(text, params)
        return time.perf_counter() - started

    def install_functions(self) -> None:
        text = render_sql((BENCH_DIR / "functions.sql").read_text(), self.db.schema)
        self.db.script(text, "bench/functions.sql")

    def close(self) -> None:
        self.db.close()
