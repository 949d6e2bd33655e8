"""What the engine hands its callers: the statuses it reports and the rows of its queries.

Each TypedDict names the columns of one query in sql/queries.sql (or of the function it
calls), with their Python types as psycopg loads them; the engine returns the rows as they
come (dicts), typed, so that callers (the CLI, an application) are checked.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal, TypedDict
from uuid import UUID

from plaudit.model.kinds import KindName
from plaudit.model.modes import Mode

# A user id as read back, by the configured user_id_type: bigint and integer, text, uuid.
UserId = int | str | UUID

# plaudit.run.status: how a rule run ended (skipped: another run held the rule).
RunStatus = Literal["ok", "failed", "skipped"]
# What deploy did to a badge (plaudit.deploy_badge), and in a deploy plan, also `removed`.
DeployStatus = Literal["created", "changed", "unchanged"]
ChangeStatus = Literal["created", "changed", "unchanged", "removed"]
# Why a rule is due for a backfill (plaudit.badge.due).
DueReason = Literal["new", "changed"]
# What `configure` did to an `events:` trigger.
TriggerStatus = Literal["installed", "removed", "unchanged"]
# What `plaudit schedule` did to a pg_cron job.
JobStatus = Literal["created", "updated", "unchanged"]
GrantSource = Literal["rule", "manual"]
AwardOutcome = Literal["awarded", "held"]


class UserGrant(TypedDict):
    """A grant in a user's trophy case (user_grants)."""

    badge_name: str
    badge: str
    level: str
    level_name: str
    scope: str
    achieved_at: datetime
    source: GrantSource
    points: int


# Where a user stands with a badge in their trophy case.
TrophyStatus = Literal["unlocked", "in_progress", "locked"]


class TrophyBadge(TypedDict):
    """A badge in a user's trophy case, per scope, with its face (trophy_case)."""

    badge: str
    scope: str
    status: TrophyStatus
    name: str
    category: str | None
    category_name: str | None
    level: str | None  # the last level held
    level_name: str | None
    next_level: str | None  # None once every level is held
    next_level_name: str | None
    value: Decimal | None  # None for an award: it measures nothing
    threshold: Decimal | None
    percent: int  # to the next level, 0-100
    icon: str | None
    points: int
    description: str | None
    hint: str | None
    achieved_at: datetime | None  # of the level held
    source: GrantSource | None
    secret: bool
    kind: KindName
    period: str | None


class UserRevoked(TypedDict):
    """A grant revoked by hand and not awarded again (user_revoked)."""

    badge_name: str
    badge: str
    level: str
    level_name: str
    scope: str
    reason: str
    revoked_by: str
    revoked_at: datetime


class GrantCount(TypedDict):
    """Grants of one level of a badge (grant_summary)."""

    slug: str
    badge_name: str
    level: str
    level_name: str
    grants: int


class TriggerChange(TypedDict):
    """One `events:` trigger that `configure` looked at."""

    event: str
    table_name: str
    change: TriggerStatus


class Awarded(TypedDict):
    """The outcome of a manual award (award_badge)."""

    level: str
    scope: str
    outcome: AwardOutcome
    source: GrantSource
    achieved_at: datetime


class RevokedGrant(TypedDict):
    """A grant that `revoke` removed (revoke_badge)."""

    level: str
    scope: str
    source: GrantSource
    achieved_at: datetime


class NewGrant(TypedDict):
    """A grant just made, as notified (check, run_grants)."""

    user_id: UserId
    badge: str
    level: str
    scope: str
    badge_name: str
    level_name: str
    points: int
    icon: str | None
    achieved_at: datetime


class UnseenGrant(TypedDict):
    """A grant the user has not been shown yet (unseen)."""

    badge: str
    level: str
    scope: str
    badge_name: str
    level_name: str
    points: int
    icon: str | None
    achieved_at: datetime
    awarded_at: datetime


class StatusRule(TypedDict):
    """A deployed rule with its last run, for `plaudit status` (status_rules); the run's
    columns are None for a rule that never ran."""

    slug: str
    enabled: bool
    dirty: bool
    due: DueReason | None
    no_triggers: bool
    mode: Mode | None
    status: RunStatus | None
    started_at: datetime | None
    seconds: float | None
    granted: int | None
    message: str | None
    backfill_skipped: bool


class StatusFailure(TypedDict):
    """A rule's failed runs of the last day (status_failures)."""

    slug: str
    failures: int
    last_failed_at: datetime
    last_message: str | None


class CronJobRun(TypedDict):
    """An installed pg_cron job with its last finished run (cron_job_runs)."""

    jobname: str
    schedule: str
    active: bool
    database: str
    status: Literal["succeeded", "failed"] | None
    start_time: datetime | None
    end_time: datetime | None
    return_message: str | None
    running: bool
    failed_last_day: int


class BadgeStat(TypedDict):
    """One level of a badge in the statistics (badge_stats)."""

    badge: str
    level: str
    holders: int
    grants: int
    players: int
    rarity: Decimal | None  # holders / players, in percent
    achieved_day: int
    achieved_week: int
    achieved_month: int
    awarded_day: int
    awarded_week: int
    awarded_month: int
    achieved_since: int | None  # None without a since
    median_from_first: timedelta | None


class WeekGrants(TypedDict):
    """The grants achieved in one ISO week (grants_per_week)."""

    week: date  # its Monday
    grants: int


class QuietRule(TypedDict):
    """A rule gone quiet: its trigger events kept coming, it granted nothing (quiet_rules)."""

    badge: str
    runs: int
    first_run_at: datetime
    last_run_at: datetime
    last_granted_at: datetime | None


class OutboxWebhook(TypedDict):
    """An endpoint's deliveries as `plaudit status` shows them (outbox_status)."""

    webhook: str
    url: str
    pending: int
    oldest_pending_seconds: float | None
    dead: int
    last_error: str | None
