"""The Python API: what the CLI (and an application) does with a plaudit database.

Rendering happens here; executing a rule run happens in the database (`plaudit.run_rule`),
so the CLI, the API and scheduled jobs share one execution path.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import psycopg

from plaudit.errors import ConfigError, RenderError
from plaudit.model.config import Config
from plaudit.model.dependencies import event_types, references
from plaudit.model.face import categories_json, translations_json
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule
from plaudit.runtime.backfill import Schedule, closure
from plaudit.runtime.backfill import run as run_backfill
from plaudit.runtime.citus import is_distributed
from plaudit.runtime.db import Database, connect
from plaudit.runtime.migrate import Upgrade, upgrade
from plaudit.runtime.rows import (
    Awarded,
    GrantCount,
    NewGrant,
    RevokedGrant,
    RunStatus,
    TriggerChange,
    TrophyBadge,
    UnseenGrant,
    UserGrant,
    UserRevoked,
)
from plaudit.runtime.watchdog import Watchdog
from plaudit.sqlgen.render import bind_params, modes, render


@dataclass(frozen=True)
class RunResult:
    """The outcome of one rule run, as `plaudit.run_rule` reports it."""

    slug: str
    status: RunStatus
    granted: int
    progressed: int
    levels: Mapping[str, int]
    message: str | None
    seconds: float
    run_id: int | None = None
    revoked: int = 0  # rule grants a `revoke: true` backfill removed
    moved: int = 0  # grants moved to an earlier achieved_at (a late event)

    @classmethod
    def from_row(
        cls, slug: str, row: Mapping[str, Any], seconds: float, db: Database | None = None
    ) -> RunResult:
        """From a row of `run_rule` or `run_batch`; with `db`, the run row's further counts
        (revoked, moved) too, read in a statement of their own (the one calling run_rule
        cannot see the run row it writes)."""
        counts = db.one("run_counts", [row["run_id"]]) if db and row["run_id"] else None
        return cls(slug=slug, status=row["status"], granted=row["granted"],
                   progressed=row["progressed"], levels=row["levels"], message=row["message"],
                   seconds=seconds, run_id=row["run_id"],
                   revoked=counts["revoked"] if counts else 0,
                   moved=counts["moved"] if counts else row.get("moved", 0))


@dataclass
class TrophyCase:
    user_id: str
    locale: str | None = None
    # every badge the user may see, where they stand, its face (plaudit.trophy_case)
    badges: list[TrophyBadge] = field(default_factory=list)
    grants: list[UserGrant] = field(default_factory=list)  # every level held, dated
    revoked: list[UserRevoked] = field(default_factory=list)  # no rule grants these again

    @property
    def points(self) -> int:
        return sum(g["points"] for g in self.grants)


@dataclass(frozen=True)
class Event:
    """Something that happened, for `Engine.check`: `comment_created` by user 7 at T."""

    type: str
    user_id: Any
    occurred_at: datetime | None = None  # None: now
    payload: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "user_id": self.user_id if isinstance(self.user_id, int) else str(self.user_id),
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "payload": dict(self.payload or {}),
        }


def definition(rule: Rule, config: Config | None = None) -> dict[str, Any]:
    """What `deploy` stores for a rule: its definition, compiled SQL per mode and their hash."""
    compiled = {mode: render(rule, mode, config).sql for mode in modes(rule)}
    body: dict[str, Any] = {
        "slug": rule.slug,
        "name": rule.name,
        "description": rule.description,
        "kind": rule.kind,
        # its triggers and the grant events of the badges it reads (`badge:<slug>`)
        "triggers": list(event_types(rule)),
        "tags": list(rule.tags),
        "enabled": rule.enabled,
        "params": [{"name": p.name, "type": p.type} for p in rule.params],
        "timeout": rule.timeout,
        "revoke": rule.revoke,
        "period": rule.period,
        "timezone": rule.timezone,
        # the badges whose grants it reads: runners order rules by these (badge_run_order)
        "depends_on": sorted(references(rule)),
        "levels": [
            {
                "key": lv.key,
                "name": lv.name,
                "threshold": _number(lv.threshold),
                "points": lv.points,
                "icon": lv.icon,
                "description": lv.description,
                "hint": lv.hint,
            }
            for lv in rule.levels
        ],
        # the face: stored with the badge, never in the compiled SQL (a change is not due)
        "category": rule.category,
        "secret": rule.secret,
        "order": rule.order,
        "i18n": translations_json(rule.i18n),
        "compiled": compiled,
    }
    body["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return body


def _number(value: int | Decimal | None) -> int | str | None:
    return str(value) if isinstance(value, Decimal) else value


def compile_rules(rules: Iterable[Rule], config: Config | None = None) -> list[dict[str, Any]]:
    """Render every rule in every mode; all render problems are reported together."""
    definitions, problems = [], []
    for rule in rules:
        try:
            definitions.append(definition(rule, config))
        except RenderError as exc:
            problems.append(str(exc))
    if problems:
        raise RenderError("\n".join(problems))
    return definitions


class Engine:
    """A plaudit database: schema, deployed rules, runs and grants."""

    def __init__(self, db: Database, config: Config, dsn: str | None = None):
        self.db = db
        # on Citus, rules render in the shape Citus runs (model/config.py `citus`)
        self.config = replace(config, citus=True) if is_distributed(db) else config
        self.dsn = dsn  # for more connections: `backfill(jobs=N)`
        # with the DSN, a watchdog connection enforces each batch rule's deadline
        self.watchdog = (
            Watchdog(dsn, config.schema, db.conn.info.backend_pid) if dsn is not None else None
        )

    @classmethod
    def connect(cls, config: Config, dsn: str) -> Engine:
        """An engine on the database at `dsn` ("" = the libpq PG* variables)."""
        conn = connect(dsn)
        return cls(Database(conn, config.schema), config, dsn)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()
        self.db.close()

    def reconnect(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        """Go on with a new connection (the old one was lost)."""
        self.db.conn.close()
        self.db.conn = conn
        if self.watchdog is not None:
            self.watchdog.close()
            self.watchdog.pid = conn.info.backend_pid

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema and rules ------------------------------------------------------------------

    def init(self, citus: bool = False) -> Upgrade:
        """Create or upgrade the schema: the pending migrations, then every function, view and
        trigger (runtime/migrate.py). One transaction; concurrent inits wait for each other.
        Refuses a server older than PostgreSQL 14 and a schema a newer plaudit upgraded.
        `citus`: place the tables on the Citus cluster (docs/citus.md)."""
        with self.db.conn.transaction():
            self.db.execute("init_lock")
            done = upgrade(self.db, self.config.user_id_type, citus)
        self.config = replace(self.config, citus=done.citus)
        return done

    def configure(self, dry_run: bool = False) -> list[TriggerChange]:
        """Sync plaudit.yaml's notify settings, `categories:`, leaderboard groups,
        timezone (scores are built in it), `webhooks:` endpoints and `events:` triggers into
        the database.

        Returns the trigger changes: [{event, table_name, change}], change being installed,
        removed or unchanged.
        """
        config = self.config
        body = {
            "dry_run": dry_run,  # rolled back anyway: skip what only costs (the scores)
            "timezone": config.timezone,  # the leaderboards' months and years (sync_scores)
            "groups": {group.name: group.query for group in config.groups},
            "notify_channel": config.notify_channel,
            "notify_max_age": config.notify_max_age,
            "events": [
                {"name": e.name, "table": e.table, "on": e.on, "user": e.user, "at": e.at}
                for e in config.events
            ],
            "categories": categories_json(config.categories),
            # the endpoints the outbox fans out to (no secrets: those stay with deliver)
            "webhooks": config.webhooks.as_json() if config.webhooks else [],
        }
        return cast("list[TriggerChange]", self.db.execute("configure", [json.dumps(body)]))

    def undeployed(self, rules: Sequence[Rule]) -> list[str]:
        """Slugs whose deployed definition differs from the rule file (or is missing)."""
        deployed = {
            row["slug"]: row["definition_hash"]
            for row in self.db.execute("deployed_hashes", [[r.slug for r in rules]])
        }
        return [
            body["slug"]
            for body in compile_rules(rules, self.config)
            if deployed.get(body["slug"]) != body["hash"]
        ]

    # -- running rules ---------------------------------------------------------------------

    def run_rule(
        self,
        rule: Rule,
        mode: Mode = "backfill",
        params: Mapping[str, str] | None = None,
        *,
        announce: bool = False,
        dry_run: bool = False,
        then: Sequence[str] = (),
        wait: bool = False,
        defer_scores: bool = False,
    ) -> RunResult:
        """One run of one deployed rule, in its own transaction (rolled back for a dry run).

        A backfill's new and moved grants are events for the rules that read the badge:
        those rules re-check the users concerned in the same transaction (incremental runs,
        in run order), except the rules in `then`, which the caller backfills next. A rule
        busy in another run is skipped, unless `wait`: then its lock is waited for (within
        the run's timeout)."""
        values = bind_params(rule, params or {})
        started = time.monotonic()
        tx = self.db.conn.transaction(force_rollback=dry_run)
        with tx:
            if mode == "backfill" and not dry_run:
                self.db.execute("batch_reset")  # run_rule adds its grant events to it
            if defer_scores:  # the caller catches up (catch_up_scores) when all rules ran
                self.db.execute("defer_scores")
            # the rule's timeout, for the rest of the transaction: the wait, then the run
            self.db.execute("set_rule_timeout", [rule.slug, self.config.timeout(mode)])
            if wait:
                self.db.execute("lock_rule", [rule.slug])
            row = self.db.one("run_rule", [rule.slug, mode, values, announce, dry_run])
            assert row is not None
            result = RunResult.from_row(rule.slug, row, time.monotonic() - started, self.db)
            if mode == "backfill" and not dry_run:
                # the dependents are not under this rule's timeout: each has its deadline
                self.db.execute("clear_timeout")
                self.run_batch_rules(exclude=then)
        return result

    def run_batch_rules(self, exclude: Sequence[str] = ()) -> list[RunResult]:
        """Run the rules the session's batch triggers: the event loop, `plaudit.run_batch`,
        in one statement in the current transaction. Each rule runs in incremental mode under
        its deadline (its timeout, else the configured one), enforced by the engine's
        watchdog; a rule past it fails alone. The rules in `exclude` are left out."""
        params = [self.config.timeout("incremental"), list(exclude)]
        if self.watchdog is None:
            rows = self.db.execute("run_batch", params)
        else:
            with self.watchdog.watching():
                rows = self.db.execute("run_batch", params)
        return [RunResult.from_row(row["badge"], row, row["seconds"] or 0.0) for row in rows]

    def backfill(
        self,
        rules: Sequence[Rule],
        params: Mapping[str, str] | None = None,
        *,
        announce: bool = False,
        dry_run: bool = False,
        wait: bool = False,
        jobs: int = 1,
        catch_up: bool = True,
        on_start: Callable[[Rule], None] | None = None,
        on_done: Callable[[Rule, RunResult], None] | None = None,
    ) -> list[RunResult]:
        """Run each rule over all history; the results in run order. A failing rule does not
        stop the others. With `jobs` > 1, that many rules run at once, each on its own
        connection (runtime/backfill.py); in any case a composite rule starts after the
        rules whose grants it reads have committed. Several rules leave their users'
        leaderboard scores for the end: recomputed then, unless not `catch_up` (the caller
        calls catch_up_scores). `on_start` and `on_done` may be called from several
        threads."""
        order = self.run_order(rules)
        slugs = [rule.slug for rule in order]
        schedule = Schedule(
            order,
            closure((row["slug"], row["dependency"])
                    for row in self.db.execute("rule_dependencies")),
            {row["badge"]: row["seconds"]
             for row in self.db.execute("backfill_estimates", [slugs])},
        )

        def run_one(engine: Engine, rule: Rule) -> RunResult:
            if on_start:
                on_start(rule)
            # the other selected rules are backfilled anyway: they are not re-checked for
            # this rule's grants (a rule reading these grants starts after this one commits)
            result = engine.run_rule(
                rule, "backfill", params, announce=announce, dry_run=dry_run,
                then=[slug for slug in slugs if slug != rule.slug], wait=wait,
                defer_scores=defer,
            )
            if on_done:
                on_done(rule, result)
            return result

        # Several rules: each rule's transaction leaves its users' leaderboard scores for
        # one recomputation at the end, instead of recomputing a user once per rule that
        # grants to them (measured: BENCHMARKS.md, 2026-11-30, issue 16)
        defer = len(order) > 1 and not dry_run
        jobs = max(1, min(jobs, len(order)))
        if jobs > 1 and self.dsn is None:
            raise ConfigError("running rules at once needs a database URL (Engine.connect)")
        extra: list[Engine] = []
        try:
            for _ in range(jobs - 1):
                extra.append(Engine.connect(self.config, cast(str, self.dsn)))
            results = run_backfill([self, *extra], schedule, run_one)
        finally:
            for engine in extra:
                engine.close()
        if catch_up and not dry_run:  # this backfill's deferred scores, any a dead one left
            self.catch_up_scores()
        return [results[slug] for slug in slugs]

    def catch_up_scores(self) -> int:
        """Recompute the leaderboard scores that backfills deferred (plaudit.score_stale),
        in bounded transactions (plaudit.score_catch_up); how many users."""
        total = 0
        while True:
            with self.db.conn.transaction():
                row = self.db.one("score_catch_up")
            done = int(row["users"]) if row else 0
            if not done:
                return total
            total += done

    def rule_states(self) -> tuple[list[str], list[str]]:
        """The deployed rules that are dirty (a failed run left them behind) and those due
        for a backfill (new or changed): what `--select state:dirty|state:due` picks."""
        dirty = [r["slug"] for r in self.db.execute("deployed_badges") if r["dirty"]]
        due = [r["slug"] for r in self.db.execute("due_rules")]
        return dirty, due

    def run_order(self, rules: Sequence[Rule]) -> list[Rule]:
        """The deployed `rules` in the one order every runner uses (plaudit.badge_run_order):
        each after the rules whose grants it reads."""
        by_slug = {rule.slug: rule for rule in rules}
        slugs = [row["slug"] for row in self.db.execute("run_order", [list(by_slug)])]
        missing = sorted(set(by_slug) - set(slugs))
        if missing:
            raise ConfigError(f"not deployed: {', '.join(missing)}; run `plaudit deploy` first")
        return [by_slug[slug] for slug in slugs]

    def grant_summary(self, slugs: Sequence[str]) -> list[GrantCount]:
        return cast("list[GrantCount]", self.db.execute("grant_summary", [list(slugs)]))

    def leaderboard(
        self,
        by: str = "points",
        period: str = "all",
        at: datetime | None = None,
        limit: int = 10,
        offset: int = 0,
        group: tuple[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The ranked users, highest value first (plaudit.leaderboard): by points, number
        of grants, or a badge's highest level held; over all time or the day/week/month/
        year containing `at` (default now) in the configured timezone; everyone, or the
        members of `group` (name, key), ranked among themselves."""
        name, key = group or (None, None)
        return self.db.execute("leaderboard", [
            by, period, at or datetime.now(UTC), self.config.timezone, limit, offset, name,
            key])

    def rank_of(
        self, user_id: Any, by: str = "points", period: str = "all",
        at: datetime | None = None, group: tuple[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """A user's place on the leaderboard with these options (plaudit.rank_of): rank,
        value, how many are ranked, the neighbours above and below; None when unranked."""
        name, key = group or (None, None)
        return self.db.one("rank_of", [
            str(user_id), by, period, at or datetime.now(UTC), self.config.timezone, name, key])

    def trophy_case(self, user_id: Any, locale: str | None = None) -> TrophyCase:
        """The user's trophy case: every badge they may see (plaudit.trophy_case; secret
        ones once earned), its texts in `locale` where the rules translate them (`fr-CA`
        falls back to `fr`, then to the rule's own text), and their grants and revocations."""
        user = str(user_id)
        return TrophyCase(
            user_id=user,
            locale=locale,
            badges=cast("list[TrophyBadge]", self.db.execute("trophy_case", [user, locale])),
            grants=cast("list[UserGrant]", self.db.execute("user_grants", [user])),
            revoked=cast("list[UserRevoked]", self.db.execute("user_revoked", [user])),
        )

    # -- manual grants ---------------------------------------------------------------------

    def award(
        self,
        badge: str,
        user_id: Any,
        reason: str,
        level: str | None = None,
        scope: str = "",
        achieved_at: datetime | None = None,
    ) -> Awarded:
        """Grant a badge by hand (source 'manual'; `level` may be omitted for a badge with
        one level). Returns {level, scope, outcome: awarded | held, source, achieved_at}:
        a grant already held is left as it is."""
        with self.db.conn.transaction():
            row = self.db.one(
                "award_badge", [str(user_id), badge, level, scope, reason, achieved_at]
            )
        assert row is not None
        return cast(Awarded, row)

    def revoke(
        self,
        badge: str,
        user_id: Any,
        reason: str,
        level: str | None = None,
        scope: str | None = None,
    ) -> list[RevokedGrant]:
        """Remove a user's grants of a badge (all levels and scopes unless named), manual or
        by a rule, logging each with the reason. Returns the grants removed."""
        with self.db.conn.transaction():
            rows = self.db.execute("revoke_badge", [str(user_id), badge, level, scope, reason])
            return cast("list[RevokedGrant]", rows)

    # -- events ----------------------------------------------------------------------------

    def track(
        self,
        type: str,
        user_id: Any,
        occurred_at: datetime | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> int:
        """Enqueue an event for the next `plaudit run`; returns its event id."""
        row = self.db.one(
            "track",
            [type, str(user_id), occurred_at, json.dumps(dict(payload)) if payload else None],
        )
        assert row is not None
        return int(row["event_id"])

    def check(self, events: Iterable[Event]) -> list[NewGrant]:
        """Run the rules these events trigger now, in the connection's current transaction
        (if one is open), and return the grants they add: [] when there is nothing new."""
        body = json.dumps([event.as_json() for event in events])
        return cast("list[NewGrant]", self.db.execute("check", [body]))

    def unseen(self, user_id: Any) -> list[UnseenGrant]:
        """The user's grants not shown yet, oldest award first."""
        return cast("list[UnseenGrant]", self.db.execute("unseen", [str(user_id)]))

    def mark_seen(
        self,
        user_id: Any,
        badge: str | None = None,
        level: str | None = None,
        scope: str | None = None,
    ) -> int:
        """Mark the user's grants (all, or of one badge, level, scope) seen; returns how many."""
        row = self.db.one("mark_seen", [str(user_id), badge, level, scope])
        assert row is not None
        return int(row["mark_seen"])
