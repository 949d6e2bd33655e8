"""`plaudit preview`: what a backfill of one rule would do, before it does anything.

The rule is rendered from its file (it need not be deployed), its contract checked, and
its backfill SQL run inside a read-only transaction that is rolled back: per level the
grants it would add and the grants that exist, a sample of the new ones, and the plan.
On Citus, which way a backfill of it runs: on the workers or through the coordinator, and
why (from Citus's EXPLAIN). For a rule with triggers, the plan of its incremental SQL too,
for a batch of one event per trigger (by a sampled user), with the app tables it would read
by sequential scan: an incremental run should read its users' rows through an index, not
the whole table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plaudit.errors import DatabaseError, Problem, RuleError
from plaudit.model.rules import Rule
from plaudit.runtime.contract import check_contracts
from plaudit.runtime.engine import Engine
from plaudit.sqlgen.render import bind_params, render
from plaudit.sqlgen.sourcemap import rule_file

SAMPLE_SIZE = 10
_SEQ_SCAN = re.compile(r"Seq Scan on (\S+)")
# plaudit's own relations that are read whole by design: the batch, and the few rows of the
# badge definitions (composite rules join badge_level)
_SMALL = frozenset({"plaudit_batch", "badge", "badge_level"})


@dataclass
class Preview:
    rule: Rule
    would_add: dict[str, int] = field(default_factory=dict)  # level key -> new grants
    existing: dict[str, int] = field(default_factory=dict)  # level key -> grants held
    sample: list[dict[str, Any]] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    incremental_plan: list[str] = field(default_factory=list)
    # on Citus: where a complete backfill runs ("workers" or "coordinator") and why, from
    # Citus's EXPLAIN of the rule's statement (sql/schema/013_citus.sql citus_route)
    route: tuple[str, str] | None = None
    # on Citus: why Citus cannot plan the rule's incremental SQL, when it cannot
    incremental_problem: str | None = None

    @property
    def total(self) -> int:
        return sum(self.would_add.values())

    @property
    def seq_scans(self) -> list[str]:
        """The relations the incremental plan reads whole (plaudit's small ones aside)."""
        found = (m[1] for line in self.incremental_plan for m in _SEQ_SCAN.finditer(line))
        return sorted(set(found) - _SMALL)


def preview(engine: Engine, rule: Rule, params: Mapping[str, str] | None = None) -> Preview:
    """Run the rule's backfill SQL without writing anything. Raises RuleError when the
    query's columns do not fit the rule's kind."""
    values = bind_params(rule, params or {})
    db, config = engine.db, engine.config
    problems = check_contracts(db, config, [rule])
    if problems:
        raise RuleError(problems)
    sql = render(rule, "backfill", config).sql
    result = Preview(rule)
    with db.conn.transaction(force_rollback=True):
        db.execute("read_only")
        db.execute("set_rule_timeout", [rule.slug, config.timeout("backfill")])
        try:
            row = db.one("preview_rule", [rule.slug, sql, values, SAMPLE_SIZE])
        except DatabaseError as exc:  # the rule's query failed: say where the rule is
            raise RuleError([Problem(rule_file(rule), rule.query_line, str(exc))]) from exc
        assert row is not None
        result.would_add = {k: int(v) for k, v in row["preview"]["levels"].items()}
        result.sample = row["preview"]["sample"]
        for held in db.execute("badge_level_grants", [[rule.slug]]):
            result.existing[held["level"]] = held["grants"]
        result.plan = [r["line"] for r in db.execute("explain_rule", [sql, values])]
    if config.citus:
        with db.conn.transaction(force_rollback=True):
            routed = db.one("citus_rule_route", [sql, values])
        if routed is not None:
            result.route = (routed["route"], routed["reason"])
    if rule.triggers and result.sample:
        events = [
            {"type": t, "user_id": result.sample[0]["user_id"], "payload": {}}
            for t in rule.triggers
        ]
        incremental = render(rule, "incremental", config).sql
        with db.conn.transaction(force_rollback=True):
            db.execute("preview_batch", [json.dumps(events)])
            try:
                plan = db.execute("explain_rule", [incremental, values])
            except DatabaseError as exc:
                if not config.citus:
                    raise
                # Citus cannot plan it: incremental runs fail, the nightly backfill repairs
                result.incremental_problem = str(exc).splitlines()[0]
                plan = []
            result.incremental_plan = [r["line"] for r in plan]
    return result
