"""Running plaudit as database jobs: pg_cron jobs calling plaudit's procedures
(sql/schema/007_jobs.sql), their status, plaudit's own health, and the runner role.

pg_cron keeps its jobs in one database of the server (`cron.database_name`); the jobs run in
any database. `plaudit schedule` therefore talks to two databases: the plaudit one, which
writes the job commands, and pg_cron's, which stores them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg.conninfo

from plaudit.errors import PlauditError
from plaudit.runtime.db import Database, connect
from plaudit.runtime.delivery import OutboxStatus, outbox_status
from plaudit.runtime.engine import Engine
from plaudit.runtime.rows import (
    CronJobRun,
    DueReason,
    JobStatus,
    QuietRule,
    StatusFailure,
    StatusRule,
)
from plaudit.runtime.stats import quiet_rules

# pg_cron learned to run a job in another database than its own in 1.4.
IN_DATABASE_VERSION = (1, 4)


class CronUnavailable(PlauditError):
    """pg_cron is missing, not loaded, or out of reach (exit 2): the message says the fix."""


@dataclass(frozen=True)
class Job:
    job: str  # events | watchdog | nightly | history
    jobname: str  # plaudit:<database>.<schema>:<job>, unique per plaudit install
    schedule: str
    command: str
    database: str  # where it runs


@dataclass
class CronSite:
    """The database where pg_cron keeps its jobs, connected."""

    db: Database
    database: str
    version: str
    created_extension: bool = False

    def runs_elsewhere(self) -> bool:
        return _version(self.version) >= IN_DATABASE_VERSION


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:2])


def preload_fix(database: str) -> str:
    return (
        "add to postgresql.conf:\n"
        "  shared_preload_libraries = 'pg_cron'\n"
        f"  cron.database_name = '{database}'\n"
        "then restart PostgreSQL and run `plaudit schedule` again"
    )


def cron_problem(probe: Mapping[str, Any]) -> str | None:
    """Why pg_cron cannot be used on this server, with the fix; None when it can."""
    database = probe["database"]
    if not probe["installed"]:
        return (
            "pg_cron is not installed on the database server. Install it (Debian/Ubuntu: "
            f"apt-get install postgresql-{probe['major']}-cron), " + preload_fix(database)
            + "; or run plaudit from system cron instead "
            "(docs/operations.md: Running as database jobs)"
        )
    if probe["cron_database"] == "":
        return "pg_cron is installed but not loaded: " + preload_fix(database)
    return None


@contextmanager
def cron_site(engine: Engine, dsn: str, cron_dsn: str | None = None) -> Iterator[CronSite]:
    """Connect to pg_cron's database: `cron_dsn`, else this server's cron.database_name
    (the same connection when it is the plaudit database). Creates the extension there when
    it is loaded but not created yet (which needs a superuser)."""
    probe = _probe(engine)
    problem = cron_problem(probe)
    if problem:
        raise CronUnavailable(problem)
    cron_database = probe["cron_database"]
    if cron_dsn is None and cron_database is None:
        if probe["version_here"] is None:
            raise CronUnavailable(
                f"cannot tell which database pg_cron keeps its jobs in: {probe['username']} "
                "may not read cron.database_name; pass --cron-dsn, or grant "
                f"pg_read_all_settings to {probe['username']}"
            )
        cron_database = probe["database"]
    own = cron_dsn is not None or cron_database != probe["database"]
    if own:
        target = cron_dsn or psycopg.conninfo.make_conninfo(dsn, dbname=cron_database)
        db = Database(connect(target), engine.db.schema)
    else:
        db = engine.db
    try:
        site = _prepare(db)
        yield site
    finally:
        if own:
            db.close()


def _probe(engine: Engine) -> dict[str, Any]:
    probe = engine.db.one("cron_probe")
    assert probe is not None
    return probe


def _prepare(db: Database) -> CronSite:
    database = db.conn.info.dbname
    row = db.one("cron_version")
    created = False
    if row is None:
        try:
            db.execute("cron_create_extension")
        except PlauditError as exc:
            raise CronUnavailable(
                f"pg_cron is loaded but its extension is not created in database {database}: "
                f"run `CREATE EXTENSION pg_cron;` there as a superuser ({exc})"
            ) from exc
        row = db.one("cron_version")
        assert row is not None
        created = True
    return CronSite(db, database, row["version"], created)


def definitions(
    engine: Engine, site: CronSite, events: str, nightly: str, batch_size: int
) -> list[Job]:
    """The jobs for this plaudit database, as `plaudit schedule` installs them."""
    config = engine.config
    rows = engine.db.execute(
        "job_definitions",
        [events, nightly, batch_size, config.statement_timeout, config.retention_runs,
         config.retention_job_runs, site.database, config.backfill_timeout,
         config.retention_outbox],
    )  # fmt: skip
    return [Job(**row) for row in rows]


def schedule(site: CronSite, jobs: Sequence[Job]) -> list[tuple[Job, JobStatus]]:
    """Create or update the jobs: [(job, created | updated | unchanged)]. Idempotent: pg_cron
    upserts a job by name, so an existing job keeps its id and its history."""
    existing = {r["jobname"]: r for r in site.db.execute("cron_jobs", [_names(jobs)])}
    changes: list[tuple[Job, JobStatus]] = []
    for job in jobs:
        old = existing.get(job.jobname)
        if old and (old["schedule"], old["command"], old["database"]) == (
            job.schedule, job.command, job.database,
        ):  # fmt: skip
            changes.append((job, "unchanged"))
            continue
        if job.database == site.database:
            site.db.execute("cron_schedule", [job.jobname, job.schedule, job.command])
        elif site.runs_elsewhere():
            site.db.execute(
                "cron_schedule_in_database",
                [job.jobname, job.schedule, job.command, job.database],
            )
        else:
            raise CronUnavailable(
                f"pg_cron {site.version} runs jobs only in its own database "
                f"({site.database}), not in {job.database}: upgrade pg_cron to 1.4 or set "
                f"cron.database_name = '{job.database}'"
            )
        changes.append((job, "updated" if old else "created"))
    return changes


def unschedule(site: CronSite, jobs: Sequence[Job]) -> list[str]:
    """Remove exactly these jobs (by name, of the connected user); returns the names removed."""
    removed = []
    for row in site.db.execute("cron_jobs", [_names(jobs)]):
        site.db.execute("cron_unschedule", [row["jobid"]])
        removed.append(row["jobname"])
    return removed


def rule_runs_last_day(engine: Engine) -> list[dict[str, Any]]:
    """plaudit.run of the last day, per mode and status: what the jobs' rule runs did."""
    return engine.db.execute("job_rule_runs")


def job_runs(site: CronSite, jobs: Sequence[Job]) -> list[CronJobRun]:
    """The installed jobs with their last run, from cron.job_run_details."""
    return cast("list[CronJobRun]", site.db.execute("cron_job_runs", [_names(jobs)]))


def _names(jobs: Sequence[Job]) -> list[str]:
    return [job.jobname for job in jobs]


# -- plaudit status ------------------------------------------------------------------------


@dataclass
class Status:
    """What `plaudit status` reports; `attention` says what needs someone."""

    pending: int
    oldest_seconds: float | None
    rules: list[StatusRule]
    failures: list[StatusFailure]
    # rules whose trigger events kept coming while they granted nothing (quiet_days)
    quiet: list[QuietRule] = field(default_factory=list)
    quiet_days: int = 0
    attention: list[str] = field(default_factory=list)
    # the webhooks' outbox (add_outbox)
    outbox: OutboxStatus = field(default_factory=OutboxStatus)
    # users whose leaderboard scores a backfill deferred (plaudit.score_stale), and how long
    # the first has waited
    scores_waiting: int = 0
    scores_waiting_seconds: float | None = None

    @property
    def dirty(self) -> list[str]:
        return [r["slug"] for r in self.rules if r["dirty"] and r["enabled"]]

    @property
    def skipped(self) -> list[str]:
        """Rules whose last backfill skipped them: another run held them."""
        return [r["slug"] for r in self.rules if r["backfill_skipped"] and r["enabled"]]

    @property
    def due(self) -> dict[DueReason, list[str]]:
        """Rules due for a backfill, by why: {new: [...], changed: [...]}."""
        return due_by_reason(self.rules)

    def as_json(self) -> dict[str, Any]:
        return {
            "pending_events": self.pending,
            "oldest_pending_seconds": self.oldest_seconds,
            "dirty_rules": self.dirty,
            "due_rules": self.due,
            "skipped_by_last_backfill": self.skipped,
            "rules": [_jsonable(r) for r in self.rules],
            "failures_last_day": [_jsonable(f) for f in self.failures],
            "quiet_days": self.quiet_days,
            "quiet_rules": [_jsonable(q) for q in self.quiet],
            "attention": self.attention,
            "outbox": self.outbox.as_json(),
            "scores_waiting": self.scores_waiting,
            "scores_waiting_seconds": self.scores_waiting_seconds,
        }


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


def status(engine: Engine, max_lag_seconds: float) -> Status:
    db = engine.db
    events = db.one("status_events")
    assert events is not None
    report = Status(
        pending=int(events["pending"]),
        oldest_seconds=events["oldest_seconds"],
        rules=cast("list[StatusRule]", db.execute("status_rules")),
        failures=cast("list[StatusFailure]", db.execute("status_failures")),
        quiet=quiet_rules(engine, engine.config.quiet_days),
        quiet_days=engine.config.quiet_days,
    )
    if report.oldest_seconds is not None and report.oldest_seconds > max_lag_seconds:
        report.attention.append(
            f"the oldest pending event has waited {duration(report.oldest_seconds)} "
            f"(more than {duration(max_lag_seconds)}): is the events job or `plaudit run` "
            "running?"
        )
    if report.dirty:
        report.attention.append(
            f"{len(report.dirty)} dirty rule{'s' if len(report.dirty) != 1 else ''} "
            f"({', '.join(report.dirty)}): a run failed; the nightly job or "
            "`plaudit backfill --select state:dirty` repairs them"
        )
    if report.due:
        report.attention.append(due_sentence(report.due))
    if report.skipped:
        one = len(report.skipped) == 1
        were, their, them = ("was", "its", "it") if one else ("were", "their", "them")
        report.attention.append(
            f"{len(report.skipped)} rule{'' if one else 's'} {were} skipped by {their} last "
            f"backfill ({', '.join(report.skipped)}): another run held {them}; "
            f"`plaudit backfill --wait --select ...` completes {them}"
        )
    if report.quiet:
        report.attention.append(quiet_sentence(report.quiet, report.quiet_days))
    waiting = db.one("status_scores")
    assert waiting is not None
    report.scores_waiting = int(waiting["users"])
    report.scores_waiting_seconds = waiting["oldest_seconds"]
    waited = report.scores_waiting_seconds
    if waited is not None and waited > max_lag_seconds:
        report.attention.append(
            f"the leaderboard scores of {report.scores_waiting:,} users have waited "
            f"{duration(waited)} for a backfill to recompute them "
            "(more than --max-lag): a backfill stopped half-way; the next `plaudit backfill` "
            "recomputes them"
        )
    add_outbox(report, engine, max_lag_seconds)
    return report


def quiet_sentence(quiet: Sequence[QuietRule], days: int) -> str:
    """`1 rule granted nothing in 7 days while its trigger events kept coming (a): ...`"""
    one = len(quiet) == 1
    return (
        f"{len(quiet)} rule{'' if one else 's'} granted nothing in {days} "
        f"day{'' if days == 1 else 's'} while {'its' if one else 'their'} trigger events "
        f"kept coming ({', '.join(q['badge'] for q in quiet)}): is a query or a threshold "
        "wrong? (`plaudit stats` lists them; quiet_days in plaudit.yaml sets the days, 0 "
        "turns this check off)"
    )


def add_outbox(report: Status, engine: Engine, max_lag_seconds: float) -> None:
    """The webhooks' outbox: per endpoint what waits, since when, and the dead letters. Dead
    letters need attention, and so does a notice waiting longer than the max lag (is
    `plaudit deliver` running, is the endpoint up?)."""
    report.outbox = outbox = outbox_status(engine)
    oldest = outbox.oldest_seconds
    if oldest is not None and oldest > max_lag_seconds:
        report.attention.append(
            f"the oldest undelivered notice has waited {duration(oldest)} (more than "
            f"{duration(max_lag_seconds)}): is `plaudit deliver` running, and the endpoint up?")
    dead = outbox.dead_sentence()
    if dead:
        report.attention.append(dead)


def due_by_reason(rules: Sequence[Mapping[str, Any]]) -> dict[DueReason, list[str]]:
    """The enabled rules that are due (rows with slug, enabled, due), grouped by reason."""
    found: dict[DueReason, list[str]] = {}
    for r in rules:
        if r["due"] and r["enabled"]:
            found.setdefault(r["due"], []).append(r["slug"])
    return found


def due_sentence(due: Mapping[DueReason, Sequence[str]]) -> str:
    """`3 rules are due for a backfill (new: a, b; changed: c): ...`"""
    count = sum(len(slugs) for slugs in due.values())
    reasons = "; ".join(f"{reason}: {', '.join(slugs)}" for reason, slugs in due.items())
    return (
        f"{count} rule{'s are' if count != 1 else ' is'} due for a backfill ({reasons}): "
        "until then incremental runs read their users' whole history; the nightly job or "
        "`plaudit backfill --select state:due` brings them up to date"
    )


def duration(seconds: float) -> str:
    """A short human duration: 0.25s, 42s, 5m, 3h 20m, 2d 4h."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


# -- the runner role -----------------------------------------------------------------------


def setup_runner_role(engine: Engine, role: str) -> list[str]:
    """Create (or use) the role rule queries run as; returns what was done."""
    with engine.db.conn.transaction():
        return [row["step"] for row in engine.db.execute("setup_runner_role", [role])]


def missing_grants(engine: Engine, role: str, tables: Sequence[str]) -> list[str]:
    """The GRANT statements the role still needs to read these tables."""
    return [r["statement"] for r in engine.db.execute("missing_grants", [role, list(tables)])]
