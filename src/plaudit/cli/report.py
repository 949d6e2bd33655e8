"""`plaudit report`: the static HTML report (docs/operations.md, "Report").

Registered on the `plaudit` group in cli/main.py.
"""

from __future__ import annotations

from pathlib import Path

import click

from plaudit.cli.common import App, exit_codes
from plaudit.cli.progress import ProgressLine
from plaudit.report.build import write_report
from plaudit.report.data import UserChoice


@click.command("report", epilog=exit_codes(
    usage="an --out that is a file, a folder holding other files than a plaudit report, or "
          "one that cannot be written"))
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="The report's folder: created, or a previous report's, whose pages are "
                   "replaced.")
@click.option("--users", "choice", type=click.Choice(["top", "all", "none"]), default="top",
              show_default=True,
              help="Which users get a page: those on the report's leaderboards, every user "
                   "holding a grant (some 30 pages a second), or none.")
@click.option("--user", "extra", multiple=True, metavar="USER_ID",
              help="A page for this user too; repeatable. `--users none --user 42`: the one "
                   "page.")
@click.option("--locale", metavar="LOCALE",
              help="Badge texts in this locale where the rules translate them (fr-CA falls "
                   "back to fr, then to the rule's own text).")
@click.pass_obj
def report_command(
    app: App, out: Path, choice: UserChoice, extra: tuple[str, ...], locale: str | None
) -> None:
    """Write a static HTML report of the badges into DIR: the catalogue by category (each
    level's holders and rarity; secret badges left out), grants per week, the leaderboards
    (points and badges, all time and this month) and pages for the users on them (trophy
    case with progress, recent grants, ranks; see --users).

    Plain HTML and CSS with inline SVG charts: no script, nothing fetched but icons given as
    URLs; open DIR/index.html from disk or publish the folder. Prints the path of
    index.html. The report reads one snapshot and writes nothing to the database."""
    with app.engine() as engine, ProgressLine("report", width=12) as line:
        written = write_report(engine, out, locale=locale, users=choice, extra=extra)
        line.done(f"{written.users:,} user page{'s' if written.users != 1 else ''}")
    for icon in written.missing_icons:
        click.echo(f"note: icon {icon} is no file in {app.project_dir}: the default icon is "
                   "shown instead", err=True)
    click.echo(out / "index.html")
