"""The `plaudit` command line. Data goes to stdout, messages to stderr.

Exit codes: 0 ok, 1 a rule or check failed, 2 usage, config or connection error, 3 a backfill
skipped rules that another run held.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import click

from . import __version__
from .config import Config, is_identifier, load_config
from .db import embedded_cluster
from .dependencies import check as check_dependencies
from .engine import Engine, RunResult
from .errors import EXIT_FAILED, EXIT_SKIPPED, ConfigError, PlauditError, RuleError
from .progress import ProgressLine
from .render import bind_params, render
from .rules import Rule, load_rules
from .selection import needs_state, select
from .views import grant_summary, trophy_case

if TYPE_CHECKING:
    from .redeploy import DeployPlan

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """What every command shares: the project, the connection settings, verbosity."""

    project_dir: Path
    dsn: str | None
    verbose: bool
    excludes: tuple[str, ...] = ()  # --exclude, set by select_option's callback

    @cached_property
    def config(self) -> Config:
        return load_config(self.project_dir)

    @cached_property
    def rules(self) -> list[Rule]:
        rules = load_rules(self.config.rules_dir, root=self.project_dir)
        check_dependencies(rules)  # badge('slug') references: known badges, no cycles
        return rules

    def rule(self, slug: str) -> Rule:
        for rule in self.rules:
            if rule.slug == slug:
                return rule
        raise ConfigError(f"no rule {slug!r} in {self.config.rules_dir}")

    def engine(self) -> Engine:
        return Engine.connect(self.config, self.dsn)

    def select(self, selectors: Sequence[str]) -> list[Rule]:
        """The rules --select picks; for `state:dirty` and `state:due` the database says."""
        dirty: list[str] = []
        due: list[str] = []
        if needs_state([*selectors, *self.excludes]):
            with self.engine() as engine:
                dirty = [r["slug"] for r in engine.db.execute("deployed_badges") if r["dirty"]]
                due = [r["slug"] for r in engine.db.execute("due_rules")]
        return select(self.rules, selectors, dirty, self.excludes, due)


class PlauditGroup(click.Group):
    """Translates plaudit's errors, once, into `Error: ...` on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PlauditError as exc:
            verbose = isinstance(ctx.obj, App) and ctx.obj.verbose
            report(exc, verbose)
            ctx.exit(exc.exit_code)


def report(exc: PlauditError, verbose: bool) -> None:
    if isinstance(exc, RuleError):
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        count = len(exc.problems)
        click.echo(f"Error: {count} problem{'s' if count != 1 else ''} in rule files", err=True)
    else:
        click.echo(f"Error: {exc}", err=True)
    cause = exc.__cause__
    while verbose and cause is not None:
        click.echo(f"  caused by {type(cause).__name__}: {cause}", err=True)
        cause = cause.__cause__
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)


def parse_params(values: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(
                f"{item!r} is not of the form name=value", param_hint="--param"
            )
        params[name.strip()] = value
    return params


def parse_timestamp(text: str, timezone: str, option: str = "--at") -> datetime:
    """An ISO 8601 timestamp; without an offset it is read in the configured time zone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 timestamp such as 2024-05-01T12:00:00+02:00",
            param_hint=option,
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(timezone))


def param_option(f: F) -> F:
    return click.option(
        "--param",
        "params",
        multiple=True,
        metavar="NAME=VALUE",
        help="A value for one of the rule's params (repeatable).",
    )(f)


def select_option(f: F) -> F:
    """--select (the command's `selectors`) and --exclude (read by App.select)."""

    def keep_excludes(ctx: click.Context, _: click.Parameter, value: tuple[str, ...]) -> None:
        app = ctx.find_object(App)
        if app is not None:
            app.excludes = value

    f = click.option(
        "--exclude",
        "-x",
        multiple=True,
        metavar="SELECTOR",
        expose_value=False,
        callback=keep_excludes,
        help="Leave out the rules it matches (same forms as --select; repeatable).",
    )(f)
    return click.option(
        "--select",
        "-s",
        "selectors",
        multiple=True,
        metavar="SELECTOR",
        help="Rule slugs, tag:NAME, kind:NAME, state:dirty, state:due or globs (repeatable); "
        "default: all.",
    )(f)


@click.group(cls=PlauditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dsn",
    envvar="PLAUDIT_DSN",
    metavar="DSN",
    help="PostgreSQL connection string. Default: $PLAUDIT_DSN, then the PG* "
    "variables, then the embedded cluster in .plaudit/.",
)
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Project directory holding plaudit.yaml.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show causes and tracebacks of errors.")
@click.version_option(__version__, prog_name="plaudit")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, project_dir: Path, verbose: bool) -> None:
    """plaudit: badges and achievements as SQL rules, run by PostgreSQL."""
    ctx.obj = App(project_dir=project_dir.resolve(), dsn=dsn, verbose=verbose)


@cli.command()
@click.option(
    "--runner-role",
    metavar="NAME",
    help="Run rule queries as this role (created NOLOGIN if missing), which may write only "
    "the plaudit schema and read what you grant it; prints the GRANTs the rules still need.",
)
@click.pass_obj
def init(app: App, runner_role: str | None) -> None:
    """Create or upgrade the plaudit schema (re-runnable), then deploy the rules."""
    from .redeploy import deploy_rules

    if runner_role is not None and not is_identifier(runner_role):
        raise click.BadParameter(
            f"{runner_role!r} must match [a-z_][a-z0-9_]*", param_hint="--runner-role"
        )
    rules = app.rules
    with app.engine() as engine:
        engine.init()
        with _refusals():
            plan = deploy_rules(engine, rules, complete=True)
        click.echo(f"schema {app.config.schema} is up to date", err=True)
        _report_deploy(plan)
        if runner_role is not None:
            from .cli_jobs import report_runner_role

            report_runner_role(engine, app, runner_role)


@cli.command()
@select_option
@click.option(
    "--force",
    is_flag=True,
    help="Remove levels and badges that have grants, deleting the grants.",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.pass_obj
def deploy(app: App, selectors: tuple[str, ...], force: bool, dry_run: bool) -> None:
    """Check the rules (files, then their columns against the database), say what changes,
    and install their definitions and compiled SQL. Without --select, badges whose rule
    file is gone are removed; removing a level or badge that has grants needs --force."""
    from .redeploy import deploy_rules

    rules = app.select(selectors)
    complete = not selectors and not app.excludes
    with app.engine() as engine, _refusals():
        plan = deploy_rules(engine, rules, complete=complete, force=force, dry_run=dry_run)
    _report_deploy(plan, dry_run)


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused deploy says why, one line per level or badge, before its Error line."""
    from .redeploy import DeployRefused

    try:
        yield
    except DeployRefused as exc:
        for reason in exc.reasons:
            click.echo(reason, err=True)
        raise


def _report_deploy(plan: DeployPlan, dry_run: bool = False) -> None:
    for change in plan.changes:
        click.echo(f"{change.slug}: {change.status}")
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
        from .jobs import due_sentence

        click.echo(f"note: {due_sentence(plan.due)}", err=True)


@cli.command("render")
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
def render_command(app: App, slug: str, mode: str, params: tuple[str, ...]) -> None:
    """Print the SQL a rule runs and its bound values (offline; nothing is executed)."""
    rule = app.rule(slug)
    values = bind_params(rule, parse_params(params))
    click.echo(f"-- {rule.slug} ({rule.kind}), {mode} mode")
    for position, (param, value) in enumerate(zip(rule.params, values, strict=True), start=1):
        shown = "NULL" if value is None else "'" + value.replace("'", "''") + "'"
        click.echo(f"-- ${position} = {shown}  ({param.name} {param.type})")
    click.echo(render(rule, mode, app.config).sql)


@cli.command()
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
@click.pass_obj
def backfill(
    app: App,
    selectors: tuple[str, ...],
    params: tuple[str, ...],
    dry_run: bool,
    announce: bool,
    as_json: bool,
    wait: bool,
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
        lines: dict[str, ProgressLine] = {}

        def start(rule: Rule) -> None:
            lines[rule.slug] = ProgressLine(rule.slug).__enter__()

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
            lines.pop(rule.slug).done(outcome)

        results = engine.backfill(
            rules, given, announce=announce, dry_run=dry_run, wait=wait, on_start=start,
            on_done=done,
        )
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


@cli.command()
@click.argument("user_id")
@click.pass_obj
def user(app: App, user_id: str) -> None:
    """Show a user's trophy case: grants, points and progress to the next levels."""
    with app.engine() as engine:
        click.echo(trophy_case(engine.trophy_case(user_id)))


@cli.group()
def db() -> None:
    """The embedded local PostgreSQL cluster in .plaudit/."""


@db.command("start")
@click.pass_obj
def db_start(app: App) -> None:
    """Start the embedded cluster (creating it the first time) and print its URL."""
    click.echo(embedded_cluster(app.project_dir).start())


@db.command("stop")
@click.pass_obj
def db_stop(app: App) -> None:
    """Stop the embedded cluster; its data stays in .plaudit/."""
    embedded_cluster(app.project_dir).stop()
    click.echo("stopped", err=True)


@db.command("url")
@click.pass_obj
def db_url(app: App) -> None:
    """Print the embedded cluster's connection URL."""
    click.echo(embedded_cluster(app.project_dir).url())


@cli.command("demo")
@click.option("--users", default=10_000, show_default=True, help="Demo users to generate.")
@click.option(
    "--activities",
    default=500_000,
    show_default=True,
    help="Posts, comments, reads and challenge entries to generate.",
)
@click.pass_obj
def demo_command(app: App, users: int, activities: int) -> None:
    """Run the demo: embedded PostgreSQL, demo data, init, backfill, live events, a trophy case."""
    from .demo import load_demo_data

    with app.engine() as engine:
        # first: the old schema's triggers would turn the bulk load into events
        engine.db.execute("demo_reset_schema")
        with ProgressLine("demo data", width=12) as line:
            counts = load_demo_data(engine.db, users, activities)
            line.done(", ".join(f"{n:,} {t}" for t, n in counts.items()))
        engine.init()
        engine.deploy(app.rules)
    ctx = click.get_current_context()
    ctx.invoke(backfill)
    _demo_live_events(app)
    with app.engine() as engine:
        showcase = engine.db.one("demo_showcase_user")
    if showcase:
        click.echo()
        ctx.invoke(user, user_id=showcase["user_id"])


def _demo_live_events(app: App, rounds: int = 16) -> None:
    """The incremental half of the demo: live app writes, `plaudit run`, notifications."""
    from .demo import stream_live_events

    click.echo()
    if not app.config.events:
        click.echo("live events: skipped, plaudit.yaml maps no app tables to events", err=True)
        return
    click.echo(f"live events: app writes, then `plaudit run`; LISTEN "
               f"{app.config.notify_channel} prints:", err=True)
    with app.engine() as engine, app.engine() as listener:
        events, granted, notified = stream_live_events(
            engine, listener.db.conn, rounds, click.echo)
    click.echo(f"live events: {events:,} events in {rounds} batches, {granted:,} granted, "
               f"{notified:,} notifications", err=True)


# Commands kept in their own modules register themselves on `cli` when imported.
from . import cli_events, cli_grants  # noqa: E402, F401


def main() -> None:
    cli(prog_name="plaudit")


from . import cli_authoring, cli_jobs  # noqa: E402,F401  (registers commands)
