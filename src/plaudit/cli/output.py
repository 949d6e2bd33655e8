"""Text views of results for the terminal: the backfill summary and a user's trophy case."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import click

from plaudit.authoring.preview import Preview
from plaudit.model.kinds import KINDS
from plaudit.model.rules import Level
from plaudit.runtime.engine import TrophyCase
from plaudit.runtime.rows import GrantCount, TrophyBadge, UserRevoked


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned table; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | Decimal) for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _cell(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def grant_summary(summary: Sequence[GrantCount], new: Mapping[tuple[str, str], int]) -> str:
    rows = [
        (s["slug"], s["level"], s["level_name"], new.get((s["slug"], s["level"]), 0), s["grants"])
        for s in summary
    ]
    return table(("badge", "level", "name", "new", "total"), rows)


def bar(fraction: float, width: int = 20) -> str:
    if math.isnan(fraction):  # a NaN value: nothing to show (an infinite one is full)
        fraction = 0.0
    filled = max(0, min(width, round(max(-1.0, min(fraction, 1.0)) * width)))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _number(value: Decimal | int) -> str:
    return f"{value.normalize():f}" if isinstance(value, Decimal) else str(value)


def _unit(badge: TrophyBadge) -> str:
    """What a progress value counts, where the number alone would not say: a streak's
    periods (days by default), a growth rule's percentage."""
    kind = KINDS.get(badge.get("kind") or "")
    if kind is None:
        return ""
    if kind.progress_unit == "periods":
        return f" {badge.get('period') or kind.default_period}s"
    return kind.progress_unit


def _title(grant: UserRevoked) -> str:
    """A grant's badge and level name (one name when they are the same), and its scope."""
    scope = f" [{grant['scope']}]" if grant["scope"] else ""
    if grant["level_name"] == grant["badge_name"]:
        return grant["badge_name"] + scope
    return f"{grant['badge_name']} · {grant['level_name']}{scope}"


def _badge_title(badge: TrophyBadge) -> str:
    """The badge's name, the level held (when named otherwise), and its scope."""
    scope = f" [{badge['scope']}]" if badge["scope"] else ""
    level = badge["level_name"]
    if level is None or level == badge["name"]:
        return badge["name"] + scope
    return f"{badge['name']} · {level}{scope}"


def _standing(badge: TrophyBadge) -> str:
    if badge["achieved_at"] is not None:  # unlocked
        manual = " (manual)" if badge["source"] == "manual" else ""
        return f"{badge['achieved_at']:%Y-%m-%d %H:%M}{manual}"
    return badge["status"].replace("_", " ")


def _next(badge: TrophyBadge) -> str | None:
    """The way to the next level: a bar and the numbers where the kind measures, and how to
    earn it (the hint)."""
    hint = f": {badge['hint']}" if badge["hint"] else ""
    value, threshold = badge["value"], badge["threshold"]
    if badge["next_level"] is None or value is None or threshold is None:
        return f"to earn {badge['next_level_name']}{hint}" if hint else None
    shown, limit, unit = _number(value), _number(threshold), _unit(badge)
    if unit == "%":
        shown, limit, unit = f"{shown}%", f"{limit}%", ""
    fraction = float(value / threshold)
    return f"{bar(fraction)}  {shown} / {limit}{unit} to {badge['next_level_name']}{hint}"


def trophy_case(case: TrophyCase) -> str:
    """The badges by category: each with the level held and when (or how far along it is),
    its description, and the way to its next level; then the revoked grants."""
    count = len(case.grants)
    lines = [f"User {case.user_id}: {count} badge{'s' if count != 1 else ''}, {case.points} points"]
    other = "Other" if any(b["category"] for b in case.badges) else "Badges"
    width = max((len(_badge_title(b)) for b in case.badges), default=0)
    section: str | None = None
    for b in case.badges:
        heading = b["category_name"] or other
        if heading != section:
            lines.append(heading)
            section = heading
        lines.append(f"  {_badge_title(b).ljust(width)}  {_standing(b)}")
        lines += [f"    {text}" for text in (b["description"], _next(b)) if text]
    if case.revoked:
        lines.append("Revoked")
        for r in case.revoked:
            lines.append(f"  {r['revoked_at']:%Y-%m-%d %H:%M}  {_title(r)}: {r['reason']}")
    return "\n".join(lines)


# -- plaudit preview ----------------------------------------------------------------------------


def _threshold(level: Level) -> int | str | None:
    if isinstance(level.threshold, Decimal):
        return f"{level.threshold.normalize():f}"
    return level.threshold


def _time(text: str | None) -> str:
    # sample rows come back through JSON: ISO text in the session's time zone
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S%z") if text else ""


def preview_text(result: Preview, plans: bool = False) -> str:
    """The preview for the terminal; the query plans only with `plans` (--plan)."""
    rule = result.rule
    levels = [
        (
            level.key,
            level.name,
            _threshold(level),
            result.would_add.get(level.key, 0),
            result.existing.get(level.key, 0),
        )
        for level in rule.levels
    ]
    lines = [
        f"{rule.name} ({rule.slug}): a backfill would add {result.total:,} "
        f"grant{'s' if result.total != 1 else ''}",
        "",
        table(("level", "name", "threshold", "would add", "existing"), levels),
        "",
    ]
    if result.sample:
        shown = len(result.sample)
        lines.append(f"Sample of the new grants ({shown} of {result.total:,})")
        rows = [
            (s["user_id"], s["level"], s["scope"], _time(s["achieved_at"]), s["value"])
            for s in result.sample
        ]
        lines += [table(("user_id", "level", "scope", "achieved_at", "value"), rows), ""]
    if result.route is not None:
        where, why = result.route
        lines += [f"On Citus, a backfill runs on the {where}: {why}", ""]
    if result.incremental_problem is not None:
        lines += [f"On Citus, incremental runs fail ({result.incremental_problem}): each "
                  "marks the rule dirty and the nightly backfill brings its grants up to date",
                  ""]
    if plans:
        lines.append("Plan (backfill)")
        lines += [f"  {line}" for line in result.plan]
    if result.incremental_plan:
        if plans:
            lines += ["", "Plan (incremental, a batch of one event per trigger)"]
            lines += [f"  {line}" for line in result.incremental_plan]
        scans = result.seq_scans
        lines.append(
            f"Incremental runs read {', '.join(scans)} by sequential scan: every batch reads "
            "the whole table. An index on the column that selects a batch's users (with the "
            "time column after it) keeps them proportional to the batch."
            if scans
            else "Incremental runs read no app table by sequential scan."
        )
    return "\n".join(lines)


def count(n: int | float, noun: str) -> str:
    """`1 event`, `2,000 events`, `3 batches`."""
    plural = noun + ("es" if noun.endswith("ch") else "s")
    return f"{n:,} {noun if n == 1 else plural}"


def waiting_once(what: str) -> Callable[[], None]:
    """An idle callback for --follow loops: says `waiting for <what>` on stderr, once."""
    said = False

    def say() -> None:
        nonlocal said
        if not said:
            click.echo(f"waiting for {what} (Ctrl-C to stop)", err=True)
            said = True

    return say
