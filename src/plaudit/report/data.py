"""What the report shows, read from one snapshot of the database: the catalogue with each
level's holders and rarity, grants per week, the leaderboards, and the users' pages.

The leaderboards, ranks and trophy cases are the engine's (plaudit.leaderboard, rank_of,
trophy_case): the report shows what `plaudit leaderboard` and `plaudit user` print.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from plaudit.errors import ConfigError, DatabaseError
from plaudit.model.kinds import KINDS
from plaudit.report.icons import Icons
from plaudit.runtime.db import Database
from plaudit.runtime.engine import Engine, TrophyCase
from plaudit.runtime.rows import TrophyBadge

# The leaderboards, in the order shown: (by, period, caption, the value's column heading).
BOARDS = [
    ("points", "all", "Points, all time", "Points"),
    ("points", "month", "Points this month", "Points"),
    ("badges", "all", "Badges, all time", "Badges"),
    ("badges", "month", "Badges this month", "Badges"),
]
RECENT = 10  # grants on a user's page
UserChoice = Literal["top", "all", "none"]


@dataclass(frozen=True)
class Level:
    key: str
    position: int
    of: int  # how many levels the badge has
    name: str
    threshold: Decimal | None
    points: int
    icon: str  # what a page links, relative to the report folder
    description: str | None
    holders: int
    players: int  # the badge's: users with progress or a grant

    @property
    def rarity(self) -> float | None:
        """The holders in percent of the badge's players; None without players."""
        return 100 * self.holders / self.players if self.players else None


@dataclass
class Badge:
    slug: str
    name: str
    description: str | None
    category: str | None
    category_name: str | None
    kind: str
    enabled: bool
    listed: bool  # in the catalogue: not secret, and enabled or held
    levels: list[Level] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """A category of the catalogue (plaudit.yaml's order; None: the uncategorized)."""

    key: str | None
    name: str
    badges: list[Badge]


@dataclass(frozen=True)
class Board:
    by: str
    period: str
    caption: str
    heading: str
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class UserPage:
    user_id: str
    case: TrophyCase
    recent: list[dict[str, Any]]
    ranks: list[tuple[str, dict[str, Any] | None]]  # (board caption, rank_of's row)

    @property
    def sections(self) -> list[tuple[str, list[TrophyBadge]]]:
        """The trophy case by category, in its order (the trophy case's own)."""
        other = "Other" if any(b["category"] for b in self.case.badges) else "Badges"
        sections: dict[str, list[TrophyBadge]] = {}
        for badge in self.case.badges:
            sections.setdefault(badge["category_name"] or other, []).append(badge)
        return list(sections.items())


@dataclass
class Overview:
    """Everything on the report's shared pages."""

    generated_at: datetime
    timezone: str
    locale: str | None
    totals: dict[str, int]
    badges: dict[str, Badge]  # every deployed badge (secret ones too), catalogue order
    weeks: list[tuple[date, int]]
    boards: list[Board]

    @property
    def sections(self) -> list[Section]:
        """The listed badges by category, in catalogue order."""
        listed = [b for b in self.badges.values() if b.listed]
        other = "Other" if any(b.category for b in listed) else "Badges"
        sections: dict[str | None, Section] = {}
        for badge in listed:
            if badge.category not in sections:
                sections[badge.category] = Section(
                    badge.category, badge.category_name or other, [])
            sections[badge.category].badges.append(badge)
        return list(sections.values())

    def level(self, badge: str, key: str | None) -> Level | None:
        found = self.badges.get(badge)
        return next((lv for lv in found.levels if lv.key == key), None) if found else None


@contextmanager
def snapshot(db: Database) -> Iterator[None]:
    """One read-only transaction for the whole report."""
    with db.conn.transaction():
        db.execute("report_snapshot")
        yield


def overview(engine: Engine, icons: Icons, locale: str | None, now: datetime) -> Overview:
    db = engine.db
    counts = {(r["badge"], r["level"]): r for r in db.execute("report_holders")}
    rows = db.execute("report_levels", [locale])
    sizes: dict[str, int] = {}
    for row in rows:
        sizes[row["badge"]] = sizes.get(row["badge"], 0) + 1
    badges: dict[str, Badge] = {}
    for row in rows:
        badge = badges.get(row["badge"])
        if badge is None:
            badge = badges[row["badge"]] = Badge(
                row["badge"], row["badge_name"], row["badge_description"], row["category"],
                row["category_name"], row["kind"], row["enabled"], row["listed"])
        held = counts.get((row["badge"], row["level"]), {"holders": 0, "players": 0})
        badge.levels.append(Level(
            row["level"], row["position"], sizes[row["badge"]], row["level_name"],
            row["threshold"], row["points"], icons.src(row["icon"], row["position"]),
            row["level_description"], held["holders"], held["players"]))
    boards = [Board(by, period, caption, heading,
                    engine.leaderboard(by, period, at=now, limit=10))
              for by, period, caption, heading in BOARDS]
    totals = db.one("report_totals") or {}
    weeks = [(r["week"], r["grants"]) for r in
             db.execute("report_grants_per_week", [engine.config.timezone])]
    return Overview(now, engine.config.timezone, locale, dict(totals), badges, weeks, boards)


def page_users(engine: Engine, boards: Sequence[Board], choice: UserChoice,
               extra: Sequence[str]) -> list[str]:
    """The users who get a page: those on the leaderboards (`top`), every user holding a
    grant (`all`) or none, and the `extra` ones; each once, as text."""
    for user_id in extra:
        try:
            engine.db.execute("report_user_id", [user_id])
        except DatabaseError as exc:
            raise ConfigError(f"--user {user_id}: not a user id here ({exc})") from None
    chosen: list[str] = []
    if choice == "top":
        chosen = [str(row["user_id"]) for board in boards for row in board.rows]
    elif choice == "all":
        chosen = [str(row["user_id"]) for row in engine.db.execute("report_users")]
    return list(dict.fromkeys([*chosen, *extra]))


def user_page(engine: Engine, user_id: str, locale: str | None, now: datetime) -> UserPage:
    case = engine.trophy_case(user_id, locale)
    recent = engine.db.execute("report_recent_grants", [user_id, RECENT])
    ranks = [(caption, engine.rank_of(user_id, by, period, now))
             for by, period, caption, _ in BOARDS]
    return UserPage(user_id, case, recent, ranks)


def progress_unit(badge: TrophyBadge) -> str:
    """What a progress value counts, where the number alone would not say: a streak's
    periods (days by default), a growth rule's percentage (as `plaudit user` shows it)."""
    kind = KINDS.get(badge["kind"])
    if kind is None:
        return ""
    if kind.progress_unit == "periods":
        return f" {badge['period'] or kind.default_period}s"
    return kind.progress_unit
