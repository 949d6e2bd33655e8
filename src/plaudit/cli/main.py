"""The `plaudit` command line: the group and its commands, registered explicitly.

Data goes to stdout, messages to stderr. Exit codes: 0 ok, 1 a rule or check failed, 2 usage,
config or connection error, 3 a backfill skipped rules that another run held.
"""

from __future__ import annotations

from pathlib import Path

import click

from plaudit import __version__
from plaudit.cli import (
    authoring,
    deliver,
    events,
    export,
    grants,
    jobs,
    local,
    report,
    rules,
    stats,
)
from plaudit.cli.common import App, PlauditGroup, exit_codes


@click.group(
    cls=PlauditGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=exit_codes(
        "a rule, a rule file or a check failed",
        skipped="a backfill skipped rules that another run held",
    ) + " Each command's --help says which codes it returns, and when.",
)
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
    explicit = ctx.get_parameter_source("project_dir") is not click.core.ParameterSource.DEFAULT
    ctx.obj = App(project_dir=project_dir.resolve(), dsn=dsn, verbose=verbose,
                  explicit_project=explicit)


for command in (
    rules.init, rules.deploy, rules.render_command, rules.backfill, rules.user,
    rules.leaderboard, export.export_command, stats.stats_command, report.report_command,
    authoring.validate, authoring.lint, authoring.test_command, authoring.preview,
    events.track, events.run_command, deliver.deliver_command, grants.award, grants.revoke,
    jobs.schedule_command, jobs.status_command, local.db, local.demo_command,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="plaudit")
