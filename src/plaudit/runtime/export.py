"""Exports (`plaudit export`): the grants as JSON lines or CSV (or, through
runtime/openbadges.py, Open Badges 3.0 credentials), and the badge definitions as JSON.

Grants are streamed (Database.stream) from one read-only snapshot and written a line at a
time, so an export of millions of grants runs in the memory of one. The same database gives
the same bytes: rows in primary key order, times in UTC, numbers and meta as PostgreSQL
writes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, TypedDict, cast

from plaudit.runtime.db import Database
from plaudit.runtime.rows import UserId

ExportFormat = Literal["jsonl", "csv", "ob3"]
FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv", "ob3")
# The columns of a grant, in the order jsonl and csv write them.
GRANT_COLUMNS = ("user_id", "badge", "level", "scope", "achieved_at", "awarded_at", "value",
                 "points", "meta")
# What an export writes into an --out folder, next to definitions.json.
FILE_NAMES: dict[ExportFormat, str] = {
    "jsonl": "grants.jsonl", "csv": "grants.csv", "ob3": "credentials.jsonl"}
DEFINITIONS_FILE = "definitions.json"


class ExportedGrant(TypedDict):
    """A row of export_grants (sql/export.sql): times and value already as text."""

    user_id: UserId
    badge: str
    level: str
    scope: str
    achieved_at: str  # ISO 8601 in UTC, or 'infinity' / '-infinity'
    awarded_at: str
    value: str | None  # numeric as PostgreSQL writes it: exact
    points: int
    meta: str | None  # jsonb as PostgreSQL writes it


@dataclass(frozen=True)
class Level:
    key: str
    name: str
    threshold: str | None  # numeric as text: exact
    points: int
    icon: str | None


@dataclass(frozen=True)
class Badge:
    slug: str
    name: str
    description: str
    kind: str
    tags: tuple[str, ...]
    enabled: bool
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class Filters:
    """Which grants: of these badges (None: all), of one user, achieved on or after a time."""

    badges: Sequence[str] | None = None
    user_id: str | None = None
    since: datetime | None = None


@contextmanager
def snapshot(db: Database) -> Iterator[None]:
    """One read-only transaction for the whole export, in UTC."""
    with db.conn.transaction():
        db.execute("export_snapshot")
        db.execute("export_timezone")
        yield


def definitions(db: Database) -> list[Badge]:
    """Every deployed badge with its levels, by slug, levels in their order."""
    badges: dict[str, Badge] = {}
    levels: dict[str, list[Level]] = {}
    for row in db.execute("export_definitions"):
        if row["slug"] not in badges:
            badges[row["slug"]] = Badge(row["slug"], row["badge_name"], row["description"],
                                        row["kind"], tuple(row["tags"]), row["enabled"], ())
            levels[row["slug"]] = []
        levels[row["slug"]].append(Level(row["level"], row["level_name"], row["threshold"],
                                         row["points"], row["icon"]))
    return [replace(badge, levels=tuple(levels[slug])) for slug, badge in badges.items()]


def definitions_json(badges: Sequence[Badge]) -> str:
    """definitions.json: {"badges": [{slug, name, description, kind, tags, enabled,
    levels: [{key, name, threshold, points, icon}]}]}; a threshold is a JSON number."""
    body = {"badges": [
        {**asdict(badge), "tags": list(badge.tags), "levels": [
            {**asdict(level), "threshold": _number(level.threshold)} for level in badge.levels]}
        for badge in badges]}
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def _number(text: str | None) -> int | float | None:
    """A threshold as a JSON number: an integer as one, a decimal as the float nearest it."""
    if text is None:
        return None
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else float(number)


def grants(db: Database, filters: Filters) -> Generator[ExportedGrant, None, None]:
    """The grants the filters pick, streamed, in primary key order: close the generator
    (contextlib.closing) to stop early."""
    params = [list(filters.badges) if filters.badges is not None else None,
              filters.user_id, filters.since]
    return cast("Generator[ExportedGrant, None, None]", db.stream("export_grants", params))


class Encoder(Protocol):
    """A format: what opens the output, and the text of each grant (None: left out)."""

    header: str

    def line(self, grant: ExportedGrant) -> str | None: ...


class JsonLines:
    """One JSON object per line, GRANT_COLUMNS as keys."""

    header = ""

    def line(self, grant: ExportedGrant) -> str:
        # assembled from pieces: json.dumps would turn an exact numeric into a float
        value, meta = grant["value"], grant["meta"]
        return (
            f'{{"user_id": {_json_user(grant["user_id"])}, "badge": {json.dumps(grant["badge"])}, '
            f'"level": {json.dumps(grant["level"])}, "scope": {_json_text(grant["scope"])}, '
            f'"achieved_at": "{grant["achieved_at"]}", "awarded_at": "{grant["awarded_at"]}", '
            f'"value": {"null" if value is None else _json_number(value)}, '
            f'"points": {grant["points"]}, "meta": {"null" if meta is None else meta}}}\n')


class Csv:
    """RFC 4180: a header row, CRLF line ends, a field quoted when it holds a comma, a
    quote or a line break (its quotes doubled). NULL is an empty field; meta is JSON."""

    header = ",".join(GRANT_COLUMNS) + "\r\n"

    def line(self, grant: ExportedGrant) -> str:
        fields = (str(grant["user_id"]), grant["badge"], grant["level"], grant["scope"],
                  grant["achieved_at"], grant["awarded_at"], grant["value"] or "",
                  str(grant["points"]), grant["meta"] or "")
        return ",".join(_csv_field(f) for f in fields) + "\r\n"


def _csv_field(text: str) -> str:
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _json_user(user_id: UserId) -> str:
    return str(user_id) if isinstance(user_id, int) else json.dumps(str(user_id))


def _json_text(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json_number(text: str) -> str:
    """A numeric's text as JSON: itself, except NaN and ±Infinity, which JSON has no number
    for (written as strings)."""
    return json.dumps(text) if text in ("NaN", "Infinity", "-Infinity") else text


@dataclass
class Written:
    grants: int = 0  # grants read
    lines: int = 0  # lines written (ob3 leaves out grants it cannot express)


def write(
    rows: Iterator[ExportedGrant],
    encoder: Encoder,
    out: Callable[[str], Any],
    every: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Written:
    """Write the header, then each grant's line, to `out` (a stream's write); `progress` is
    called with the count of grants read every `every` grants."""
    written = Written()
    out(encoder.header)
    for grant in rows:
        text = encoder.line(grant)
        written.grants += 1
        if text is not None:
            out(text)
            written.lines += 1
        if progress is not None and every and written.grants % every == 0:
            progress(written.grants)
    return written
