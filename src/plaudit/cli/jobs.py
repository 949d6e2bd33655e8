"""Running as database jobs: `schedule` installs, shows or removes the pg_cron jobs, `status`
says whether anything needs attention. (`init --runner-role` is in cli/rules.py.)

Registered on the `plaudit` group in cli/main.py.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from plaudit.cli.common import App, exit_codes
from plaudit.cli.output import count, table
from plaudit.model.config import DURATION_REQUIREMENT, is_duration
from plaudit.runtime.contract import read_tables
from plaudit.runtime.db import Database, connect
from plaudit.runtime.delivery import cron_line
from plaudit.runtime.engine import Engine
from plaudit.runtime.jobs import (
    CronSite,
    Job,
    Status,
    cron_site,
    definitions,
    duration,
    job_runs,
    missing_grants,
    rule_runs_last_day,
    schedule,
    setup_runner_role,
    status,
    unschedule,
)
from plaudit.runtime.rows import StatusRule

MESSAGE_WIDTH = 60


@contextmanager
def _engine_and_dsn(app: App) -> Iterator[tuple[Engine, str]]:
    """An engine, and the DSN it was opened with (pg_cron's database is reached from it)."""
    dsn = app.database_url
    engine = Engine(Database(connect(dsn), app.config.schema), app.config)
    try:
        yield engine, dsn
    finally:
        engine.close()


@click.command("schedule", epilog=exit_codes(
    "with --status, no plaudit job is installed or a job's last run failed",
    usage="pg_cron is not installed, not loaded or out of reach (the message says the fix)"))
@click.option("--events", "events_at", default="* * * * *", show_default=True, metavar="CRON",
              help="When the events job processes the queue (pg_cron schedule, in GMT).")
@click.option("--nightly", "nightly_at", default="0 3 * * *", show_default=True, metavar="CRON",
              help="When the nightly job backfills the due rules (plaudit.due_rules()) and "
                   "prunes old runs (pg_cron schedule, in GMT).")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Events per transaction in the events job, and up to as many later "
                   "events of their users.")
@click.option("--cron-dsn", metavar="DSN",
              help="pg_cron's database. Default: this server's cron.database_name.")
@click.option("--remove", "action", flag_value="remove",
              help="Remove plaudit's jobs for this database and schema (and nothing else).")
@click.option("--status", "action", flag_value="status",
              help="Show the jobs, their last runs (cron.job_run_details) and the rule runs "
                   "of the last day; exit 1 if a job's last run failed.")
@click.pass_obj
def schedule_command(
    app: App, events_at: str, nightly_at: str, batch_size: int, cron_dsn: str | None,
    action: str | None,
) -> None:  # fmt: skip
    """Install or update the pg_cron jobs that run plaudit inside PostgreSQL.

    Four jobs, named plaudit:<database>.<schema>:<job>: `events` processes pending events
    every minute (CALL plaudit.job_events), `watchdog` cancels rule runs past their timeout,
    `nightly` backfills the rules without triggers, the dirty and the due ones and the rules
    reading their grants (`--select state:due`), then prunes old runs (CALL
    plaudit.job_nightly), `history` prunes these jobs' rows in cron.job_run_details.
    Re-running it updates the jobs in place. Webhooks are delivered by a process, not by
    pg_cron: with webhooks in plaudit.yaml it says so, with the crontab line.
    """
    with _engine_and_dsn(app) as (engine, dsn):
        if action is None and app.config.webhooks:
            _webhooks_note(engine, app)
    with _engine_and_dsn(app) as (engine, dsn), cron_site(engine, dsn, cron_dsn) as site:
        if site.created_extension:
            click.echo(f"created extension pg_cron in database {site.database}", err=True)
        jobs = definitions(engine, site, events_at, nightly_at, batch_size)
        if action == "remove":
            removed = unschedule(site, jobs)
            for name in removed:
                click.echo(name)
            click.echo(f"removed {count(len(removed), 'job')}", err=True)
        elif action == "status":
            _show_status(engine, site, jobs)
        else:
            changes = schedule(site, jobs)
            click.echo(table(
                ("job", "schedule", "change", "database", "command"),
                [(j.jobname, j.schedule, change, j.database, j.command) for j, change in changes],
            ))  # fmt: skip
            counts = {c: sum(1 for _, change in changes if change == c)
                      for c in ("created", "updated", "unchanged")}
            click.echo(
                f"pg_cron {site.version} in database {site.database}: "
                f"{count(len(changes), 'job')} ({counts['created']} created, "
                f"{counts['updated']} updated, {counts['unchanged']} unchanged), "
                f"run as {site.db.conn.info.user}",
                err=True,
            )


def _webhooks_note(engine: Engine, app: App) -> None:
    """pg_cron cannot deliver webhooks here: say so, and how to run the deliverer."""
    row = engine.db.one("pg_net_available")
    why = ("this server has no pg_net, so PostgreSQL cannot send HTTP" if not (
        row and row["available"]) else "plaudit does not send HTTP through pg_net")
    click.echo(
        f"webhooks: no pg_cron job delivers them ({why}): run `plaudit deliver --follow` as "
        f"a service (systemd), or from cron:\n  {cron_line(app.project_dir)}", err=True)


def _show_status(engine: Engine, site: CronSite, jobs: Sequence[Job]) -> None:
    runs = job_runs(site, jobs)
    zone = ZoneInfo(engine.config.timezone)
    if not runs:
        click.echo(f"no plaudit jobs in pg_cron for database {engine.db.conn.info.dbname}, "
                   f"schema {engine.config.schema}: `plaudit schedule` installs them", err=True)
        sys.exit(1)
    click.echo(table(
        ("job", "schedule", "active", "last run", "status", "took", "failed 24h", "message"),
        [(r["jobname"], r["schedule"], "yes" if r["active"] else "no",
          _time(r["start_time"], zone),
          (r["status"] or "never run") + (" (running now)" if r["running"] else ""),
          _took(r["start_time"], r["end_time"]), r["failed_last_day"],
          _short(r["return_message"]))
         for r in runs],
    ))  # fmt: skip
    rule_runs = rule_runs_last_day(engine)
    if not rule_runs:
        click.echo("\nrule runs in the last day (plaudit.run): none")
    else:
        click.echo("\nrule runs in the last day (plaudit.run):\n" + table(
            ("mode", "status", "runs", "granted", "last"),
            [(r["mode"], r["status"], r["runs"], r["granted"],
              _time(r["last_started_at"], zone)) for r in rule_runs],
        ))  # fmt: skip
    failed = [r["jobname"] for r in runs if r["status"] == "failed"]
    if failed:
        click.echo(f"Error: the last run of {', '.join(failed)} failed", err=True)
        sys.exit(1)


@click.command("status", epilog=exit_codes(
    "something needs attention (one `attention:` line each on stderr)",
    usage="an invalid --max-lag"))
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.option("--max-lag", default="5min", show_default=True, metavar="DURATION",
              help="Pending events waiting longer than this need attention.")
@click.pass_obj
def status_command(app: App, as_json: bool, max_lag: str) -> None:
    """Pending events, dirty rules, each rule's last run, the failures of the last day, and
    the webhooks' outbox: notices pending, the oldest's age, dead letters.

    Exits 1 when something needs attention (events waiting longer than --max-lag, dirty
    rules, rules due for a backfill, rules a backfill skipped, rules gone quiet: granting
    nothing for plaudit.yaml's quiet_days while their trigger events kept coming, dead
    letters, a notice undelivered for longer than --max-lag), so that monitoring can run it.
    """
    if not is_duration(max_lag):
        raise click.BadParameter(f"{max_lag!r} {DURATION_REQUIREMENT}", param_hint="--max-lag")
    with app.engine() as engine:
        report = status(engine, _seconds(max_lag))
    if as_json:
        click.echo(json.dumps(report.as_json(), default=str))
    else:
        click.echo(_status_text(report, ZoneInfo(app.config.timezone)))
    for line in report.attention:
        click.echo(f"attention: {line}", err=True)
    if report.attention:
        sys.exit(1)
    click.echo("ok: nothing needs attention", err=True)


def _status_text(report: Status, zone: ZoneInfo) -> str:
    events = f"pending events: {report.pending:,}"
    if report.oldest_seconds is not None:
        events += f", the oldest waiting for {duration(report.oldest_seconds)}"
    quiet = {q["badge"] for q in report.quiet}
    rules = table(
        ("rule", "state", "last run", "mode", "status", "took", "granted"),
        [(r["slug"], _state(r, quiet), _time(r["started_at"], zone) or "never", r["mode"],
          r["status"],
          duration(r["seconds"]) if r["seconds"] is not None else None, r["granted"])
         for r in report.rules],
    )  # fmt: skip
    if report.failures:
        failures = "failures in the last day:\n" + table(
            ("rule", "failures", "last", "message"),
            [(f["slug"], f["failures"], _time(f["last_failed_at"], zone),
              _one_line(f["last_message"])) for f in report.failures],
        )  # fmt: skip
    else:
        failures = "failures in the last day: none"
    return f"{events}{_outbox_text(report)}\n\n{rules}\n\n{failures}"


def _outbox_text(report: Status) -> str:
    """The webhooks' outbox, when plaudit.yaml has webhooks: a line, then one per endpoint."""
    outbox = report.outbox
    if not outbox.webhooks:
        return ""
    line = f"\noutbox: {outbox.pending:,} pending"
    if outbox.oldest_seconds is not None:
        line += f", the oldest waiting for {duration(outbox.oldest_seconds)}"
    line += f", {outbox.dead:,} dead letter{'' if outbox.dead == 1 else 's'}\n"
    return line + table(
        ("webhook", "url", "pending", "oldest", "dead", "last error"),
        [(w["webhook"], w["url"], w["pending"],
          duration(w["oldest_pending_seconds"]) if w["oldest_pending_seconds"] is not None
          else None, w["dead"], _short(w["last_error"])) for w in outbox.webhooks],
    )  # fmt: skip


def _state(rule: StatusRule, quiet: set[str]) -> str:
    if not rule["enabled"]:
        return "disabled"
    if rule["dirty"]:
        return "dirty"
    if rule["due"]:
        return f"due ({rule['due']})"
    return "quiet" if rule["slug"] in quiet else "ok"


def _time(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if value else None


def _took(start: datetime | None, end: datetime | None) -> str | None:
    return duration((end - start).total_seconds()) if start and end else None


def _one_line(message: str | None) -> str | None:
    """A message on one line, whole: a failure's cause is often at its end."""
    return None if message is None else " ".join(message.split())


def _short(message: str | None) -> str | None:
    """A pg_cron job's message, cut to a column's width (`cron.job_run_details` has it all)."""
    line = _one_line(message)
    if line is None:
        return None
    return line if len(line) <= MESSAGE_WIDTH else line[: MESSAGE_WIDTH - 3] + "..."


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(ms|s|min|h)?", text.strip())
    assert match is not None
    unit = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, None: 0.001}[match.group(2)]
    return int(match.group(1)) * unit




def report_runner_role(engine: Engine, app: App, role: str) -> None:
    """`plaudit init --runner-role`: set the role up, then say which of the app tables the
    rules read it may not read yet, with the GRANTs that fix it."""
    for step in setup_runner_role(engine, role):
        click.echo(f"runner role: {step}", err=True)
    missing = missing_grants(engine, role, read_tables(app.rules, app.config))
    if missing:
        click.echo(f"runner role: {role} may not read all the tables the rules read yet; "
                   "as their owner, run:", err=True)
        for statement in missing:
            click.echo(f"  {statement}", err=True)
