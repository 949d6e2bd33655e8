"""The Python API: what the CLI (and an application) does with a plaudit database.

Rendering happens here; executing a rule run happens in the database (`plaudit.run_rule`),
so the CLI, the API and scheduled jobs share one execution path.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .config import Config
from .db import Database, connect, render_sql, resolve_dsn
from .errors import RenderError
from .render import bind_params, modes, render
from .rules import Rule
from .sqlfiles import schema_files


@dataclass(frozen=True)
class RunResult:
    """The outcome of one rule run, as `plaudit.run_rule` reports it."""

    slug: str
    status: str  # ok | failed | skipped
    granted: int
    progressed: int
    levels: Mapping[str, int]
    message: str | None
    seconds: float
    run_id: int | None = None


@dataclass
class TrophyCase:
    user_id: str
    grants: list[dict[str, Any]] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(g["points"] for g in self.grants)


def definition(rule: Rule) -> dict[str, Any]:
    """What `deploy` stores for a rule: its definition, compiled SQL per mode and their hash."""
    compiled = {mode: render(rule, mode).sql for mode in modes(rule)}
    body: dict[str, Any] = {
        "slug": rule.slug,
        "name": rule.name,
        "description": rule.description,
        "kind": rule.kind,
        "triggers": list(rule.triggers),
        "tags": list(rule.tags),
        "enabled": rule.enabled,
        "params": [{"name": p.name, "type": p.type} for p in rule.params],
        "timeout": rule.timeout,
        "revoke": rule.revoke,
        "period": rule.period,
        "timezone": rule.timezone,
        "levels": [
            {
                "key": lv.key,
                "name": lv.name,
                "threshold": _number(lv.threshold),
                "points": lv.points,
                "icon": lv.icon,
            }
            for lv in rule.levels
        ],
        "compiled": compiled,
    }
    body["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return body


def _number(value: int | Decimal | None) -> int | str | None:
    return str(value) if isinstance(value, Decimal) else value


def compile_rules(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """Render every rule in every mode; all render problems are reported together."""
    definitions, problems = [], []
    for rule in rules:
        try:
            definitions.append(definition(rule))
        except RenderError as exc:
            problems.append(str(exc))
    if problems:
        raise RenderError("\n".join(problems))
    return definitions


class Engine:
    """A plaudit database: schema, deployed rules, runs and grants."""

    def __init__(self, db: Database, config: Config):
        self.db = db
        self.config = config

    @classmethod
    def connect(cls, config: Config, dsn: str | None = None) -> Engine:
        conn = connect(resolve_dsn(dsn, config.project_dir))
        return cls(Database(conn, config.schema), config)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema and rules ------------------------------------------------------------------

    def init(self) -> None:
        """Create or upgrade the schema. Re-runnable; concurrent inits wait for each other."""
        with self.db.conn.transaction():
            self.db.execute("init_lock")
            for path in schema_files():
                text = render_sql(
                    path.read_text(), self.config.schema, user_id_type=self.config.user_id_type
                )
                self.db.script(text, f"applying {path.name}")

    def deploy(self, rules: Sequence[Rule]) -> dict[str, str]:
        """Install the rules' definitions and compiled SQL: {slug: created|changed|unchanged}."""
        definitions = compile_rules(rules)
        result = {}
        with self.db.conn.transaction():
            for body in definitions:
                row = self.db.one("deploy_badge", [json.dumps(body)])
                assert row is not None
                result[body["slug"]] = row["deploy_badge"]
        return result

    def undeployed(self, rules: Sequence[Rule]) -> list[str]:
        """Slugs whose deployed definition differs from the rule file (or is missing)."""
        deployed = {
            row["slug"]: row["definition_hash"]
            for row in self.db.execute("deployed_hashes", [[r.slug for r in rules]])
        }
        return [
            body["slug"]
            for body in compile_rules(rules)
            if deployed.get(body["slug"]) != body["hash"]
        ]

    # -- running rules ---------------------------------------------------------------------

    def run_rule(
        self,
        rule: Rule,
        mode: str = "backfill",
        params: Mapping[str, str] | None = None,
        *,
        announce: bool = False,
        dry_run: bool = False,
    ) -> RunResult:
        """One run of one deployed rule, in its own transaction (rolled back for a dry run)."""
        values = bind_params(rule, params or {})
        started = time.monotonic()
        tx = self.db.conn.transaction(force_rollback=dry_run)
        with tx:
            self.db.execute("set_rule_timeout", [rule.slug, self.config.statement_timeout])
            row = self.db.one("run_rule", [rule.slug, mode, values, announce, dry_run])
        assert row is not None
        return RunResult(
            slug=rule.slug,
            status=row["status"],
            granted=row["granted"],
            progressed=row["progressed"],
            levels=row["levels"],
            message=row["message"],
            seconds=time.monotonic() - started,
            run_id=row["run_id"],
        )

    def backfill(
        self,
        rules: Sequence[Rule],
        params: Mapping[str, str] | None = None,
        *,
        announce: bool = False,
        dry_run: bool = False,
        on_start: Callable[[Rule], None] | None = None,
        on_done: Callable[[Rule, RunResult], None] | None = None,
    ) -> list[RunResult]:
        """Run each rule over all history. A failing rule does not stop the others."""
        results = []
        for rule in rules:
            if on_start:
                on_start(rule)
            result = self.run_rule(rule, "backfill", params, announce=announce, dry_run=dry_run)
            if on_done:
                on_done(rule, result)
            results.append(result)
        return results

    def grant_summary(self, slugs: Sequence[str]) -> list[dict[str, Any]]:
        return self.db.execute("grant_summary", [list(slugs)])

    def trophy_case(self, user_id: str) -> TrophyCase:
        return TrophyCase(
            user_id=user_id,
            grants=self.db.execute("user_grants", [user_id]),
            progress=self.db.execute("user_progress", [user_id]),
        )
