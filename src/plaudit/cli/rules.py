"""Commands that install and run rules: init, deploy, render, backfill, user."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from plaudit.cli.common import (
    App,
    exit_codes,
    json_option,
    json_text,
    param_option,
    parse_params,
    parse_timestamp,
    select_option,
)
from plaudit.cli.output import grant_summary, table, trophy_case
from plaudit.cli.progress import InOrder, ProgressLine
from plaudit.errors import EXIT_FAILED, EXIT_SKIPPED, ConfigError
from plaudit.model.config import is_identifier
from plaudit.model.face import LOCALE_REQUIREMENT, is_locale
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule
from plaudit.runtime.citus import CITUS_NOTE
from plaudit.runtime.engine import RunResult
from plaudit.sqlgen.render import bind_params, render

if TYPE_CHECKING:
    from plaudit.runtime.deploy import DeployPlan


@click.command(epilog=exit_codes(
    "a rule is invalid (its file, or its columns against the database), or deploying "
    "would delete grants of a removed level or badge"))
@click.option(
    "--runner-role",
    metavar="NAME",
    help="Run rule queries as this role (created NOLOGIN if missing), which may write only "
    "the plaudit schema and read what you grant it; prints the GRANTs the rules still need.",
)
@click.option(
    "--citus",
    is_flag=True,
    help="On a Citus coordinator: distribute grants and progress by user, make the badge "
    "tables reference tables, keep the rest on the coordinator (docs/citus.md). Later inits "
    "keep it so.",
)
@click.pass_obj
def init(app: App, runner_role: str | None, citus: bool) -> None:
    """Create or upgrade the plaudit schema (re-runnable), then deploy the rules."""
    from plaudit.runtime.deploy import deploy_rules

    if runner_role is not None and not is_identifier(runner_role):
        raise click.BadParameter(
            f"{runner_role!r} must match [a-z_][a-z0-9_]*", param_hint="--runner-role"
        )
    rules = app.rules
    with app.engine() as engine:
        changed = engine.init(citus)
        if changed.citus:
            click.echo(CITUS_NOTE, err=True)
        for name in changed.applied:
            click.echo(f"applied migration {name}", err=True)
        for what in changed.dropped:  # plaudit's own, no longer defined
            click.echo(f"dropped {what} (this version no longer has it)", err=True)
        with _refusals():
            plan = deploy_rules(engine, rules, complete=True)
        click.echo(f"schema {app.config.schema} is up to date", err=True)
        _report_deploy(plan, verbose=app.verbose)
        if runner_role is not None:
            from plaudit.cli.jobs import report_runner_role

            report_runner_role(engine, app, runner_role)


@click.command(epilog=exit_codes(
    "a rule is invalid (its file, or its columns against the database), or the deploy "
    "would delete grants and --force is not given"))
@select_option
@click.option(
    "--force",
    is_flag=True,
    help="Remove levels and badges that have grants, deleting the grants.",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@json_option
@click.pass_obj
def deploy(
    app: App, selectors: tuple[str, ...], force: bool, dry_run: bool, as_json: bool
) -> None:
    """Check the rules (files, then their columns against the database), say what changes,
    and install their definitions and compiled SQL. Without --select, badges whose rule
    file is gone are removed; removing a level or badge that has grants needs --force."""
    from plaudit.runtime.deploy import deploy_rules

    rules = app.select(selectors)
    complete = not selectors and not app.excludes
    with app.engine() as engine, _refusals():
        plan = deploy_rules(engine, rules, complete=complete, force=force, dry_run=dry_run)
    if as_json:
        click.echo(json_text({
            "dry_run": dry_run,
            "rules": [{"slug": c.slug, "status": c.status, "notes": c.notes}
                      for c in plan.changes],
            "triggers": plan.triggers, "due": plan.due}))
    else:
        _report_deploy(plan, dry_run, app.verbose)


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused deploy says why, one line per level or badge, before its Error line."""
    from plaudit.runtime.deploy import DeployRefused

    try:
        yield
    except DeployRefused as exc:
        for reason in exc.reasons:
            click.echo(reason, err=True)
        raise


def _report_deploy(plan: DeployPlan, dry_run: bool = False, verbose: bool = False) -> None:
    """What changed, one line each (what did not, too, with -v): the rules, then the capture
    triggers of plaudit.yaml's `events:`."""
    for change in plan.changes:
        if change.status != "unchanged" or verbose:
            click.echo(f"{change.slug}: {change.status}")
    for trigger in plan.triggers:
        if trigger["change"] != "unchanged" or verbose:
            click.echo(f"events.{trigger['event']}: capture trigger on {trigger['table_name']} "
                       f"{trigger['change']}")
    for note in plan.notes:
        click.echo(note, err=True)
    deployed = len(plan.changes) - plan.count("removed")
    rules = f"{deployed} rule{'s' if deployed != 1 else ''}"
    summary = f"{rules} ({plan.count('created')} created, {plan.count('changed')} changed"
    summary += f", {plan.count('removed')} removed)" if plan.count("removed") else ")"
    if dry_run:
        click.echo(f"dry run: would deploy {summary}; nothing was written", err=True)
    else:
        click.echo(f"deployed {summary}", err=True)
    if plan.due:
        from plaudit.runtime.jobs import due_sentence

        click.echo(f"note: {due_sentence(plan.due)}", err=True)


@click.command("render", epilog=exit_codes(
    "a rule file or the rule's template is invalid",
    usage="an unknown rule, or a --param that is unknown or not of its declared type"))
@click.argument("slug")
@click.option(
    "--mode",
    type=click.Choice(["backfill", "incremental"]),
    default="backfill",
    show_default=True,
    help="Which of the rule's two renderings to print.",
)
@param_option
@click.pass_obj
def render_command(app: App, slug: str, mode: Mode, params: tuple[str, ...]) -> None:
    """Print the SQL a rule runs and its bound values (offline; nothing is executed)."""
    rule = app.rule(slug)
    values = bind_params(rule, parse_params(params))
    click.echo(f"-- {rule.slug} ({rule.kind}), {mode} mode")
    for position, (param, value) in enumerate(zip(rule.params, values, strict=True), start=1):
        shown = "NULL" if value is None else "'" + value.replace("'", "''") + "'"
        click.echo(f"-- $1[{position}] = {shown}  ({param.name} {param.type})")
    click.echo(render(rule, mode, app.config).sql)


@click.command(epilog=exit_codes(
    "a rule failed (it is marked dirty) or a rule file is invalid",
    usage="a --param no selected rule declares, or rules changed since the last deploy",
    skipped="no rule failed, but some were skipped because another run held them "
    "(see --wait)"))
@select_option
@param_option
@click.option("--dry-run", is_flag=True, help="Count what would be granted; write nothing.")
@click.option(
    "--announce",
    is_flag=True,
    help="Treat the grants as news: unseen and notified (default: quiet).",
)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per rule run (status, granted per level, moved, "
                   "revoked) instead of the summary table.")
@click.option("--wait", is_flag=True,
              help="Wait for a rule another run holds (within backfill_timeout) instead of "
                   "skipping it.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=os.cpu_count() or 1,
              show_default="the number of cores",
              help="How many rules run at once, each on its own connection; a composite "
                   "rule starts after the rules it reads.")
@click.pass_obj
def backfill(
    app: App,
    selectors: tuple[str, ...],
    params: tuple[str, ...],
    dry_run: bool,
    announce: bool,
    as_json: bool,
    wait: bool,
    jobs: int,
) -> None:
    """Run the rules over all history, awarding everything already earned, with real dates.

    Grants are never taken back (except by `revoke: true` rules); a grant whose date the
    history shows earlier is moved, and counted as moved. Exits 1 if a rule failed, 3 if
    none failed but some were skipped because another run held them (see --wait)."""
    given = parse_params(params)
    rules = [r for r in app.select(selectors) if r.enabled]
    if not rules:
        click.echo("nothing to backfill: no enabled rule is selected", err=True)
        return
    if given:
        rules = [r for r in rules if all(any(p.name == n for p in r.params) for n in given)]
        if not rules:
            raise ConfigError(f"no selected rule declares param {', '.join(sorted(given))}")
    for rule in rules:
        bind_params(rule, given)  # every value is type-checked before anything runs
    with app.engine() as engine:
        stale = engine.undeployed(rules)
        if stale:
            raise ConfigError(
                f"rules changed since the last deploy: {', '.join(stale)}; "
                "run `plaudit deploy` first"
            )
        verb = "would grant" if dry_run else "granted"
        lines = InOrder([rule.slug for rule in engine.run_order(rules)])

        def done(rule: Rule, result: RunResult) -> None:
            outcome = (
                f"{result.granted:,} {verb}"
                if result.status == "ok"
                else f"{result.status}: {result.message}"
            )
            if result.moved:  # late history: an earlier date
                outcome += f", {result.moved:,} moved earlier"
            if result.revoked:  # `revoke: true` rules
                outcome += f", {result.revoked:,} revoked"
            lines.done(rule.slug, outcome, result.seconds)

        try:
            results = engine.backfill(
                rules, given, announce=announce, dry_run=dry_run, wait=wait, jobs=jobs,
                catch_up=False, on_done=done,
            )
        finally:
            lines.close()
        if not dry_run:  # the leaderboard scores the rules left for the end (several rules)
            with ProgressLine("leaderboard scores") as line:
                users = engine.catch_up_scores()
                if users or len(rules) > 1:
                    line.done(f"{users:,} users recomputed")
        if as_json:
            for result in results:
                click.echo(json.dumps({
                    "rule": result.slug, "status": result.status, "dry_run": dry_run,
                    "granted": result.granted, "levels": dict(result.levels),
                    "moved": result.moved, "revoked": result.revoked,
                    "progressed": result.progressed, "message": result.message,
                    "seconds": round(result.seconds, 3)}))
        elif dry_run:
            for result in results:
                for level, n in sorted(result.levels.items()):
                    click.echo(f"{result.slug}\t{level}\t{n}")
        else:
            new = {(r.slug, level): n for r in results for level, n in r.levels.items()}
            click.echo(grant_summary(engine.grant_summary([r.slug for r in rules]), new))
    failed = [r for r in results if r.status == "failed"]
    by_slug = {rule.slug: rule for rule in rules}
    for result in failed:  # where to look: the rule's query, at its file and line
        click.echo(f"{by_slug[result.slug].location()}: {result.message}", err=True)
    if failed:
        click.echo(
            f"Error: {len(failed)} of {len(results)} rules failed; they are marked for backfill",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    skipped = [r.slug for r in results if r.status == "skipped"]
    if skipped:
        click.echo(
            f"Error: {len(skipped)} of {len(results)} rules skipped: another run held them "
            f"({', '.join(skipped)}); run the backfill again, or with --wait",
            err=True,
        )
        sys.exit(EXIT_SKIPPED)


def _locale(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is not None and not is_locale(value):
        raise click.BadParameter(f"'{value}' {LOCALE_REQUIREMENT}")
    return value


@click.command(epilog=exit_codes(usage="a --locale that is not a locale like fr or pt-BR"))
@click.argument("user_id")
@click.option("--locale", metavar="LOCALE", callback=_locale,
              help="Show the badges' texts in this locale where the rules translate them "
                   "(fr-CA falls back to fr, then to the rule's own text).")
@json_option
@click.pass_obj
def user(app: App, user_id: str, locale: str | None, as_json: bool) -> None:
    """Show a user's trophy case: every badge they may see, by category (secret ones once
    earned), with the level held, progress to the next and how to earn it; their points,
    revoked grants, and their place on the all-time points leaderboard."""
    with app.engine() as engine:
        case = engine.trophy_case(user_id, locale)
        place = engine.rank_of(user_id)
    if as_json:
        click.echo(json_text({"user_id": case.user_id, "locale": case.locale,
                              "points": case.points, "badges": case.badges,
                              "grants": case.grants, "revoked": case.revoked, "rank": place}))
    else:
        click.echo(trophy_case(case))
        if place is not None:
            click.echo(_place(place))


def _place(place: dict[str, Any]) -> str:
    """Rank by points: #2 of 4 (above: user 2, 30; below: user 3, 15)."""
    near = [f"{side}: user {place[side]}, {place[side + '_value']:,}"
            for side in ("above", "below") if place[side] is not None]
    return (f"Rank by points: #{place['rank']:,} of {place['ranked']:,}"
            + (f" ({'; '.join(near)})" if near else ""))


def _group(ctx: click.Context, param: click.Parameter, value: str | None
           ) -> tuple[str, str] | None:
    """--group NAME:KEY, split at the first colon (a key may hold colons)."""
    if value is None:
        return None
    name, colon, key = value.partition(":")
    if not colon or not name or not key:
        raise click.BadParameter(f"{value!r} is not NAME:KEY, like classroom:7")
    return name, key


@click.command(epilog=exit_codes(
    usage="an unknown period, a --by that is neither points, badges nor a deployed badge, "
          "an --at that is not a timestamp, or a --group that plaudit.yaml does not name"))
@click.option("--by", default="points", show_default=True, metavar="points|badges|SLUG",
              help="Rank by the points of the grants, their number, or the highest level "
                   "held of the badge SLUG.")
@click.option("--period", type=click.Choice(["all", "day", "week", "month", "year"]),
              default="all", show_default=True,
              help="Count only the grants achieved in the day, ISO week, month or year "
                   "containing --at, in plaudit.yaml's timezone.")
@click.option("--at", metavar="TIMESTAMP", help="When the period is; default: now.")
@click.option("--group", metavar="NAME:KEY", callback=_group,
              help="Rank only the members of one group of plaudit.yaml's `groups:` "
                   "(classroom:7), among themselves.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
@click.pass_obj
def leaderboard(app: App, by: str, period: str, at: str | None, group: tuple[str, str] | None,
                limit: int, offset: int, as_json: bool) -> None:
    """Who leads: standard competition ranking (1, 2, 2, 4), highest value first; equal
    values listed by who reached them first. Users with nothing in the period are left out."""
    moment = parse_timestamp(at, app.config.timezone) if at else None
    with app.engine() as engine:
        rows = engine.leaderboard(by, period, moment, limit, offset, group)
    if as_json:
        click.echo(json_text(rows))
        return
    zone = ZoneInfo(app.config.timezone)
    click.echo(table(("rank", "user_id", "value", "reached_at"),
                     [(r["rank"], r["user_id"], r["value"],
                       r["reached_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M"))
                      for r in rows]))

