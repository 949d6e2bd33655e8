"""Where plaudit's .sql files live, and the one parser for named queries.

Installed from a wheel, `sql/` is package data (`plaudit/sql`); in a source checkout it is the
repository's top-level `sql/`. Fixed queries live in `sql/queries.sql` under `-- name: x`
headers so Python never assembles SQL in strings.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("plaudit's sql/ directory is missing from this installation")


def parse_queries(text: str) -> dict[str, str]:
    """Split a file into {name: sql} at `-- name: x` lines; text before the first is a header."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";").strip()
    return queries


@cache
def queries() -> dict[str, str]:
    return parse_queries((sql_dir() / "queries.sql").read_text())


def query(name: str) -> str:
    return queries()[name]


def schema_files() -> list[Path]:
    """The numbered schema files, in the order they are applied."""
    return sorted((sql_dir() / "schema").glob("[0-9][0-9][0-9]_*.sql"))
