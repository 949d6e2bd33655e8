"""Commands for the embedded local cluster and the demo."""

from __future__ import annotations

from pathlib import Path

import click

from plaudit.cli.common import App, exit_codes
from plaudit.cli.progress import ProgressLine
from plaudit.cli.rules import backfill, leaderboard, user
from plaudit.local.citus import CitusCluster, citus_workers
from plaudit.local.cluster import EMBEDDED_DIR, embedded_cluster, not_a_project
from plaudit.runtime.deploy import deploy_rules

CLUSTER_EXITS = exit_codes(usage="the embedded cluster cannot be created, started or stopped")


@click.group(epilog=CLUSTER_EXITS)
def db() -> None:
    """The embedded local PostgreSQL cluster in .plaudit/."""


@db.command("start", epilog=CLUSTER_EXITS)
@click.option("--citus", "workers", type=click.IntRange(1, 16), metavar="N",
              help="A Citus cluster: the coordinator and N workers, each on its own port "
              "(Citus is built from the vendored source when missing; docs/citus.md).")
@click.pass_obj
def db_start(app: App, workers: int | None) -> None:
    """Start the embedded cluster (creating it the first time) and print its URL."""
    if not app.is_project:
        raise not_a_project(app.project_dir)
    if workers is None:
        workers = citus_workers(app.project_dir / EMBEDDED_DIR) or None
    if workers:
        click.echo(CitusCluster(app.project_dir / EMBEDDED_DIR, workers).start())
    else:
        click.echo(embedded_cluster(app.project_dir).start())


@db.command("stop", epilog=CLUSTER_EXITS)
@click.pass_obj
def db_stop(app: App) -> None:
    """Stop the embedded cluster (a Citus cluster's workers too); its data stays in
    .plaudit/."""
    workers = citus_workers(app.project_dir / EMBEDDED_DIR)
    if workers:
        CitusCluster(app.project_dir / EMBEDDED_DIR, workers).stop()
    else:
        embedded_cluster(app.project_dir).stop()
    click.echo("stopped", err=True)


@db.command("url", epilog=CLUSTER_EXITS)
@click.pass_obj
def db_url(app: App) -> None:
    """Print the embedded cluster's connection URL."""
    click.echo(embedded_cluster(app.project_dir).url())


@click.command("demo", epilog=exit_codes(
    "a rule file is invalid or a rule failed in the backfill",
    usage="the database has a `users` table the demo did not create",
    skipped="the backfill skipped rules that another run held"))
@click.option("--users", default=10_000, show_default=True, help="Demo users to generate.")
@click.option(
    "--activities",
    default=500_000,
    show_default=True,
    help="Posts, comments, reads and challenge entries to generate.",
)
@click.pass_obj
def demo_command(app: App, users: int, activities: int) -> None:
    """Run the demo: embedded PostgreSQL, demo data, init, backfill, a leaderboard, live
    events, a trophy case, and the HTML report in .plaudit/report/."""
    from plaudit.local.demo import load_demo_data, reset_schema, showcase_user

    with app.engine() as engine:
        reset_schema(engine.db)  # first: the old schema's triggers would load events
        with ProgressLine("demo data", width=12) as line:
            counts = load_demo_data(engine.db, users, activities)
            line.done(", ".join(f"{n:,} {t}" for t, n in counts.items()))
        engine.init()
        deploy_rules(engine, app.rules, complete=True)
    ctx = click.get_current_context()
    ctx.invoke(backfill)
    click.echo("\nplaudit leaderboard --limit 5", err=True)
    ctx.invoke(leaderboard, by="points", period="all", at=None, group=None, limit=5, offset=0,
               as_json=False)
    _demo_live_events(app)
    with app.engine() as engine:
        showcase = showcase_user(engine.db)
    if showcase is not None:
        click.echo()
        ctx.invoke(user, user_id=showcase)
    _demo_report(app)


def _demo_report(app: App) -> None:
    """The end of the demo: the HTML report, in .plaudit/report/ (the path is printed
    relative to the project, where `make demo` runs)."""
    from plaudit.report.build import write_report

    relative = Path(".plaudit", "report")
    click.echo(f"\nplaudit report --out {relative}", err=True)
    with app.engine() as engine, ProgressLine("report", width=12) as line:
        written = write_report(engine, app.project_dir / relative)
        line.done(f"{written.users:,} user pages")
    click.echo(f"open {relative / 'index.html'} in a browser")


def _demo_live_events(app: App, rounds: int = 16) -> None:
    """The incremental half of the demo: live app writes, `plaudit run`, notifications."""
    from plaudit.local.demo import stream_live_events

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
