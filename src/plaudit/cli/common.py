"""What every command shares: the App object, error reporting, shared options and parsing.

Exit codes (every command's --help states its own): 0 ok, 1 a rule or check failed, 2 usage,
config or connection error, 3 a backfill skipped rules that another run held.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click

from plaudit.errors import (
    EXIT_FAILED,
    EXIT_SKIPPED,
    EXIT_USAGE,
    ConfigError,
    DatabaseError,
    PlauditError,
    RuleError,
)
from plaudit.local.cluster import resolve_dsn
from plaudit.model.config import CONFIG_FILE, Config, load_config
from plaudit.model.dependencies import check as check_dependencies
from plaudit.model.face import unknown_categories
from plaudit.model.rules import Rule, load_rules
from plaudit.model.selection import needs_state, select
from plaudit.runtime.engine import Engine

F = TypeVar("F", bound=Callable[..., Any])


USAGE_ERROR = "usage, configuration or connection error"
# The commands that may create the embedded cluster (the others only use an existing one).
CREATE_CLUSTER = ("init", "demo", "db start")


def exit_codes(failed: str | None = None, usage: str = "", skipped: str | None = None) -> str:
    """The `Exit codes: ...` paragraph every command's --help ends with (its epilog).

    `failed` says when the command exits 1, `usage` adds to what exits 2, `skipped` says when
    it exits 3; a code the command never returns is left out.
    """
    codes = ["0 ok"]
    if failed:
        codes.append(f"{EXIT_FAILED} {failed}")
    codes.append(f"{EXIT_USAGE} {USAGE_ERROR}{', ' + usage if usage else ''}")
    if skipped:
        codes.append(f"{EXIT_SKIPPED} {skipped}")
    return "Exit codes: " + "; ".join(codes) + "."


@dataclass
class App:
    """What every command shares: the project, the connection settings, verbosity."""

    project_dir: Path
    dsn: str | None
    verbose: bool
    excludes: tuple[str, ...] = ()  # --exclude, set by select_option's callback
    explicit_project: bool = True  # --project given (else the current folder)

    @cached_property
    def config(self) -> Config:
        return load_config(self.project_dir)

    @cached_property
    def rules(self) -> list[Rule]:
        rules = load_rules(self.config.rules_dir, root=self.project_dir)
        check_dependencies(rules)  # badge('slug') references: known badges, no cycles
        problems = unknown_categories(rules, self.config)  # as plaudit.yaml lists them
        if problems:
            raise RuleError(problems)
        return rules

    def rule(self, slug: str) -> Rule:
        for rule in self.rules:
            if rule.slug == slug:
                return rule
        raise ConfigError(f"no rule {slug!r} in {self.config.rules_dir}")

    @cached_property
    def database_url(self) -> str:
        """--dsn, then PLAUDIT_DSN, then the PG* variables, then the embedded cluster, which
        only the commands that set a project up create, in a folder that is one."""
        command = click.get_current_context().command_path.split(" ", 1)[-1]
        return resolve_dsn(
            self.dsn, self.project_dir, project=self.is_project,
            creates=command in CREATE_CLUSTER,
        )

    @property
    def is_project(self) -> bool:
        """The folder is a plaudit project: it has plaudit.yaml, or --project named it."""
        return self.explicit_project or (self.project_dir / CONFIG_FILE).is_file()

    def engine(self) -> Engine:
        return Engine.connect(self.config, self.database_url)

    def select(self, selectors: Sequence[str]) -> list[Rule]:
        """The rules --select picks; for `state:dirty` and `state:due` the database says."""
        dirty: list[str] = []
        due: list[str] = []
        if needs_state([*selectors, *self.excludes]):
            with self.engine() as engine:
                dirty, due = engine.rule_states()
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
    if verbose and isinstance(exc, DatabaseError) and exc.query:
        click.echo(f"  in plaudit's query {exc.query}", err=True)
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


def json_option(f: F) -> F:
    """--json: the command's result as JSON on stdout (docs/cli-json.md has the schemas)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON (schema: docs/cli-json.md).")(f)


def json_text(value: Any) -> str:
    """`value` as one line of JSON: times ISO 8601 with their offset, numbers as numbers."""
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


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
        help="Rule slugs, tag:NAME, kind:NAME, state:dirty, state:due or globs; +S adds the "
        "rules S reads, S+ the rules reading S; A,B is both (repeatable); default: all.",
    )(f)

