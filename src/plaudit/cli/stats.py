"""`plaudit stats`: per badge and level, grants per week, the rules gone quiet.

Registered on the `plaudit` group in cli/main.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import click

from plaudit.cli.common import App, exit_codes, json_option, json_text, select_option
from plaudit.cli.output import bar, table
from plaudit.runtime.jobs import duration
from plaudit.runtime.rows import BadgeStat, QuietRule, WeekGrants
from plaudit.runtime.stats import Stats, stats


@click.command("stats", epilog=exit_codes(usage="a --select matching no rule, a bad --since"))
@select_option
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="DATE",
              help="Count the grants achieved since the start of DATE (in plaudit.yaml's "
                   "timezone) and start the weekly series with DATE's ISO week. Default: "
                   "the series starts with the first grant's week.")
@click.option("--quiet-days", type=click.IntRange(min=0), metavar="N",
              help="List the rules that granted nothing in the last N days while their "
                   "trigger events kept coming (0: none). Default: quiet_days of "
                   "plaudit.yaml (7).")
@json_option
@click.pass_obj
def stats_command(app: App, selectors: tuple[str, ...], since: datetime | None,
                  quiet_days: int | None, as_json: bool) -> None:
    """Statistics of the deployed badges, per level: holders, rarity (the holders' share
    of the users with progress or a grant of the badge), grants achieved and awarded in the
    last 24 hours, 7 days and month, the median time from the badge's first level; then
    grants per ISO week, and the rules gone quiet. --select picks badges among the rule
    files."""
    badges = _selected(app, selectors)
    day = since.date() if since else None
    with app.engine() as engine:
        report = stats(engine, day, badges, quiet_days)
    if badges is not None:
        missing = sorted(set(badges) - {row["badge"] for row in report.levels})
        if missing:
            click.echo(f"note: not deployed: {', '.join(missing)}", err=True)
    if as_json:
        click.echo(json_text(_json(report, app.config.timezone)))
    else:
        click.echo(_text(report, ZoneInfo(app.config.timezone)))


def _selected(app: App, selectors: Sequence[str]) -> list[str] | None:
    """The slugs --select and --exclude pick among the rule files; None: every deployed
    badge (the rule files are not read)."""
    if not selectors and not app.excludes:
        return None
    return [rule.slug for rule in app.select(selectors)]


def _text(report: Stats, zone: ZoneInfo) -> str:
    since = [f"since {report.since}"] if report.since else []
    levels = table(
        ("badge", "level", "holders", "players", "rarity", "achieved 24h/7d/month",
         "awarded 24h/7d/month", *since, "median from first"),
        [(r["badge"], r["level"], r["holders"], r["players"], _percent(r["rarity"]),
          _three(r["achieved_day"], r["achieved_week"], r["achieved_month"]),
          _three(r["awarded_day"], r["awarded_week"], r["awarded_month"]),
          *([r["achieved_since"]] if since else []), _median(r["median_from_first"]))
         for r in report.levels],
    )  # fmt: skip
    quiet = _quiet(report.quiet, report.quiet_days, zone)
    return "\n\n".join([levels, _weeks(report.weeks), quiet])


def _weeks(weeks: Sequence[WeekGrants]) -> str:
    if not weeks:
        return "grants per week: none"
    most = max(w["grants"] for w in weeks) or 1
    return "grants per week:\n" + table(
        ("week", "monday", "grants", ""),
        [(_iso_week(w["week"]), w["week"].isoformat(), w["grants"], bar(w["grants"] / most))
         for w in weeks],
    )


def _quiet(quiet: Sequence[QuietRule], days: int, zone: ZoneInfo) -> str:
    if days == 0:
        return "rules gone quiet: not checked (quiet days 0)"
    head = (f"rules gone quiet (no grant in {days} day{'' if days == 1 else 's'} while their "
            "trigger events kept coming):")
    if not quiet:
        return f"{head} none"
    return head + "\n" + table(
        ("rule", "runs", "first run", "last run", "last granted"),
        [(q["badge"], q["runs"], _minute(q["first_run_at"], zone),
          _minute(q["last_run_at"], zone),
          _minute(q["last_granted_at"], zone) or "not in the run log") for q in quiet],
    )  # fmt: skip


def _json(report: Stats, timezone: str) -> dict[str, Any]:
    return {
        "since": report.since,
        "timezone": timezone,
        "quiet_days": report.quiet_days,
        "levels": [_level_json(r) for r in report.levels],
        "weeks": [{"week": w["week"], "iso_week": _iso_week(w["week"]), "grants": w["grants"]}
                  for w in report.weeks],
        "quiet_rules": report.quiet,
    }


def _level_json(row: BadgeStat) -> dict[str, Any]:
    """The row as it comes, the median in seconds (a number) instead of an interval."""
    body: dict[str, Any] = {k: v for k, v in row.items() if k != "median_from_first"}
    median = row["median_from_first"]
    body["median_from_first_seconds"] = median.total_seconds() if median is not None else None
    return body


def _iso_week(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def _three(*counts: int) -> str:
    return "/".join(f"{n:,}" for n in counts)


def _percent(value: Decimal | None) -> str | None:
    return None if value is None else f"{value}%"


def _median(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = value.total_seconds()  # negative when a user reached it before the first
    return duration(seconds) if seconds >= 0 else "-" + duration(-seconds)


def _minute(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else None
