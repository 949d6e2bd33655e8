"""Where plaudit's .sql files live, and the one parser for named queries.

Installed from a wheel, `sql/` is package data (`plaudit/sql`); in a source checkout it is the
repository's top-level `sql/`. Fixed queries live in `sql/queries.sql` (init's in
`sql/migrate.sql`, export's in `sql/export.sql`, the report's in `sql/report.sql`) under
`-- name: x` headers so Python never assembles SQL in strings.
Tables are created by numbered migrations (`sql/migrations/NNNN_name.sql`, applied once
each); functions, views and triggers by the schema files (`sql/schema/NNN_name.sql`,
re-created by every init).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


QUERY_FILES = ("queries.sql", "migrate.sql", "export.sql", "report.sql", "citus/queries.sql")


@cache
def queries() -> dict[str, str]:
    named: dict[str, str] = {}
    for file in QUERY_FILES:
        for name, body in parse_queries((sql_dir() / file).read_text()).items():
            if name in named:
                raise ValueError(f"query {name!r} is defined twice ({file})")
            named[name] = body
    return named


def query(name: str) -> str:
    return queries()[name]


def schema_files() -> list[Path]:
    """The numbered schema files, in the order they are applied."""
    return sorted((sql_dir() / "schema").glob("[0-9][0-9][0-9]_*.sql"))


_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered migration file: applied once, in order of its version."""

    version: int
    name: str
    path: Path


def migrations() -> list[Migration]:
    """The migrations this plaudit knows, by version (sql/migrations/0001_baseline.sql, ...)."""
    found: dict[int, Migration] = {}
    for path in (sql_dir() / "migrations").glob("*.sql"):
        match = _MIGRATION.match(path.name)
        if not match:
            raise ValueError(f"{path}: a migration is named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"migration {version} is defined twice: {found[version].path}, {path}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]
