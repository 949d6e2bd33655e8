"""Statistics (issue 14): per badge and level, grants per ISO week, and the rules gone quiet.

The database does the work (sql/schema/011_stats.sql: plaudit.badge_stats, grants_per_week,
quiet_rules); this module calls it with the configured time zone and reads `--since DATE` as
the start of that day there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import cast
from zoneinfo import ZoneInfo

from plaudit.runtime.engine import Engine
from plaudit.runtime.rows import BadgeStat, QuietRule, WeekGrants


@dataclass(frozen=True)
class Stats:
    """What `plaudit stats` reports."""

    levels: list[BadgeStat]
    weeks: list[WeekGrants]
    quiet: list[QuietRule]
    since: date | None
    quiet_days: int


def start_of(day: date, timezone: str) -> datetime:
    """The instant `day` begins in `timezone`: what `--since DATE` means."""
    return datetime.combine(day, time(), tzinfo=ZoneInfo(timezone))


def badge_stats(
    engine: Engine, since: date | None = None, badges: Sequence[str] | None = None
) -> list[BadgeStat]:
    """Per badge (all deployed, or `badges`) and level: holders, players, rarity, recent
    grants, grants achieved since `since`, the median time from the first level."""
    start = start_of(since, engine.config.timezone) if since else None
    rows = engine.db.execute("badge_stats", [start, _slugs(badges)])
    return cast("list[BadgeStat]", rows)


def grants_per_week(
    engine: Engine, since: date | None = None, badges: Sequence[str] | None = None
) -> list[WeekGrants]:
    """Grants achieved per ISO week in the configured time zone, from the week of `since`
    (else of the first grant) to the current one, empty weeks included."""
    start = start_of(since, engine.config.timezone) if since else None
    rows = engine.db.execute("grants_per_week", [start, engine.config.timezone, _slugs(badges)])
    return cast("list[WeekGrants]", rows)


def quiet_rules(engine: Engine, days: int) -> list[QuietRule]:
    """The enabled rules with triggers whose trigger events kept coming for the last `days`
    days while they granted nothing; none when `days` is 0 (the check is off)."""
    if days <= 0:
        return []
    return cast("list[QuietRule]", engine.db.execute("quiet_rules", [days]))


def stats(
    engine: Engine,
    since: date | None = None,
    badges: Sequence[str] | None = None,
    quiet_days: int | None = None,
) -> Stats:
    """Everything `plaudit stats` shows; `quiet_days` defaults to plaudit.yaml's."""
    days = engine.config.quiet_days if quiet_days is None else quiet_days
    quiet = quiet_rules(engine, days)
    if badges is not None:
        quiet = [q for q in quiet if q["badge"] in badges]
    return Stats(
        levels=badge_stats(engine, since, badges),
        weeks=grants_per_week(engine, since, badges),
        quiet=quiet,
        since=since,
        quiet_days=days,
    )


def _slugs(badges: Sequence[str] | None) -> list[str] | None:
    return None if badges is None else list(badges)
