"""The `plaudit` command line. Data goes to stdout, messages to stderr.

Exit codes: 0 ok, 1 a rule or check failed, 2 usage, config or connection error.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .config import Config, load_config
from .db import embedded_cluster
from .engine import Engine, RunResult
from .errors import ConfigError, PlauditError, RuleError
from .progress import ProgressLine
from .render import bind_params, render
from .rules import Rule, load_rules
from .selection import select
from .views import grant_summary, trophy_case

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """What every command shares: the project, the connection settings, verbosity."""

    project_dir: Path
    dsn: str | None
    verbose: bool

    @cached_property
    def config(self) -> Config:
        return load_config(self.project_dir)

    @cached_property
    def rules(self) -> list[Rule]:
        return load_rules(self.config.rules_dir, root=self.project_dir)

    def rule(self, slug: str) -> Rule:
        for rule in self.rules:
            if rule.slug == slug:
                return rule
        raise ConfigError(f"no rule {slug!r} in {self.config.rules_dir}")

    def engine(self) -> Engine:
        return Engine.connect(self.config, self.dsn)


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


def param_option(f: F) -> F:
    return click.option(
        "--param",
        "params",
        multiple=True,
        metavar="NAME=VALUE",
        help="A value for one of the rule's params (repeatable).",
    )(f)


def select_option(f: F) -> F:
    return click.option(
        "--select",
        "-s",
        "selectors",
        multiple=True,
        metavar="SELECTOR",
        help="Rule slugs, tag:NAME or globs (repeatable); default: all.",
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
@click.pass_obj
def init(app: App) -> None:
    """Create or upgrade the plaudit schema (re-runnable), then deploy the rules."""
    rules = app.rules
    with app.engine() as engine:
        engine.init()
        changes = engine.deploy(rules)
    click.echo(f"schema {app.config.schema} is up to date", err=True)
    _report_deploy(changes)


@cli.command()
@select_option
@click.pass_obj
def deploy(app: App, selectors: tuple[str, ...]) -> None:
    """Validate and render the rules, then install their definitions and compiled SQL."""
    rules = select(app.rules, selectors)
    with app.engine() as engine:
        _report_deploy(engine.deploy(rules))


def _report_deploy(changes: dict[str, str]) -> None:
    for slug, change in changes.items():
        click.echo(f"{slug}: {change}")
    counts = {c: sum(1 for v in changes.values() if v == c) for c in ("created", "changed")}
    click.echo(
        f"deployed {len(changes)} rules ({counts['created']} created, {counts['changed']} changed)",
        err=True,
    )


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
    click.echo(render(rule, mode).sql)


@cli.command()
@select_option
@param_option
@click.option("--dry-run", is_flag=True, help="Count what would be granted; write nothing.")
@click.option(
    "--announce",
    is_flag=True,
    help="Treat the grants as news: unseen and notified (default: quiet).",
)
@click.pass_obj
def backfill(
    app: App, selectors: tuple[str, ...], params: tuple[str, ...], dry_run: bool, announce: bool
) -> None:
    """Run the rules over all history, awarding everything already earned, with real dates."""
    given = parse_params(params)
    rules = [r for r in select(app.rules, selectors) if r.enabled]
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
            lines.pop(rule.slug).done(outcome)

        results = engine.backfill(
            rules, given, announce=announce, dry_run=dry_run, on_start=start, on_done=done
        )
        if dry_run:
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
        sys.exit(1)


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
    """Run the demo: embedded PostgreSQL, demo data, init, backfill, a trophy case."""
    import time

    from .demo import load_demo_data

    with app.engine() as engine:
        started = time.monotonic()
        counts = load_demo_data(engine.db, users, activities)
        click.echo(
            f"demo data: {', '.join(f'{n:,} {t}' for t, n in counts.items())} "
            f"in {time.monotonic() - started:.1f}s",
            err=True,
        )
        engine.db.execute("demo_reset_schema")
        engine.init()
        engine.deploy(app.rules)
    ctx = click.get_current_context()
    ctx.invoke(backfill)
    with app.engine() as engine:
        showcase = engine.db.one("demo_showcase_user")
    if showcase:
        click.echo()
        ctx.invoke(user, user_id=showcase["user_id"])


def main() -> None:
    cli(prog_name="plaudit")
