"""Safe redeploys: what `deploy` changes, said in words, and grants never lost by accident.

Before anything is written, the rule files are compared with the deployed definitions
(their hashes first, then field by field): a changed threshold or query is reported with
what to do about it ("existing grants stand; run `plaudit backfill ...`"); removing a level
or a badge that has grants is refused unless `force`; a disabled rule is deployed disabled,
so it stops running and keeps its grants. A dry run stops after the plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from plaudit.errors import PlauditError, RenderError, RuleError
from plaudit.model.config import Config
from plaudit.model.face import unknown_categories
from plaudit.model.rules import Level, Rule
from plaudit.runtime.contract import check_contracts, check_groups
from plaudit.runtime.engine import Engine, compile_rules
from plaudit.runtime.rows import ChangeStatus, DueReason, TriggerChange
from plaudit.sqlgen.groups import group_problems
from plaudit.sqlgen.render import modes, render


class DeployRefused(PlauditError):
    """Deploying would delete grants, and --force was not given (exit 1)."""

    exit_code = 1

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__(
            "nothing was deployed: it would delete grants; "
            "`plaudit deploy --force` deletes them"
        )


@dataclass
class Change:
    """One badge's part in a deploy."""

    slug: str
    status: ChangeStatus
    notes: list[str] = field(default_factory=list)  # sentences for the analyst


@dataclass
class DeployPlan:
    changes: list[Change] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # what needs --force
    level_removals: list[tuple[str, str]] = field(default_factory=list)  # (slug, level) w/ grants
    badge_removals: list[str] = field(default_factory=list)
    # after the deploy: rules due for a backfill, by why (new, changed), in run order
    due: dict[DueReason, list[str]] = field(default_factory=dict)
    # the capture triggers of plaudit.yaml's `events:` it installed, removed or left alone
    triggers: list[TriggerChange] = field(default_factory=list)
    # the rules' definitions as compiled for the plan: what the deploy installs
    definitions: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: ChangeStatus) -> int:
        return sum(1 for c in self.changes if c.status == status)

    @property
    def notes(self) -> list[str]:
        return [note for change in self.changes for note in change.notes]


def deploy_rules(
    engine: Engine,
    rules: Sequence[Rule],
    *,
    complete: bool = False,
    force: bool = False,
    dry_run: bool = False,
    contracts: bool = True,
) -> DeployPlan:
    """The one way rules are deployed (CLI, demo, rule tests): check contracts, plan, and
    (unless `dry_run`) install `rules` in one transaction, then sync plaudit.yaml's settings.
    `complete`: `rules` is the whole rule set, so deployed badges missing from it are
    removed. `contracts=False` skips the check of the queries' columns against the database
    (rule tests: their tables exist only inside each case). Raises RuleError for contract
    problems, DeployRefused for grants at stake."""
    problems = unknown_categories(rules, engine.config) + group_problems(engine.config)
    if contracts and not problems:
        problems = check_contracts(engine.db, engine.config, rules)
        problems += check_groups(engine.db, engine.config)
    if problems:
        raise RuleError(problems)
    plan = plan_deploy(engine, rules, complete=complete)
    if plan.refusals and not force:
        raise DeployRefused(plan.refusals)
    if dry_run:
        # what configure would do to the capture triggers: done, and rolled back
        with engine.db.conn.transaction(force_rollback=True):
            plan.triggers = engine.configure(dry_run=True)
        return plan
    db = engine.db
    with db.conn.transaction():
        for slug, level in plan.level_removals:
            db.execute("delete_level_grants", [slug, level])
        for slug in plan.badge_removals:
            db.execute("remove_badge", [slug])  # its grants, logged
            db.execute("remove_badge_row", [slug])
        for body in plan.definitions:
            db.execute("deploy_badge", [json.dumps(body)])
        plan.triggers = engine.configure()
        for row in db.execute("due_rules"):
            if row["reason"] in ("new", "changed"):
                plan.due.setdefault(row["reason"], []).append(row["slug"])
    return plan


def plan_deploy(engine: Engine, rules: Sequence[Rule], *, complete: bool) -> DeployPlan:
    """Compare the rules with what is deployed; reads, never writes."""
    deployed = {row["slug"]: row for row in engine.db.execute("deployed_definitions")}
    definitions = compile_rules(rules, engine.config)
    new = {body["slug"]: body for body in definitions}
    by_slug = {rule.slug: rule for rule in rules}
    gone = sorted(set(deployed) - set(new)) if complete else []
    grants: dict[tuple[str, str], int] = {}
    for row in engine.db.execute("badge_level_grants", [sorted(set(deployed) & {*new, *gone})]):
        grants[(row["badge"], row["level"])] = row["grants"]
    plan = DeployPlan(definitions=definitions)
    for slug, body in new.items():
        old = deployed.get(slug)
        if old is None:
            change = Change(slug, "created")
        elif old["definition"].get("hash") == body["hash"]:
            change = Change(slug, "unchanged")
        else:
            query_changed = _query_changed(by_slug[slug], old, engine.config)
            change = _changed(plan, old, body, grants, query_changed)
        plan.changes.append(change)
    for slug in gone:
        name = deployed[slug]["definition"].get("name", slug)
        held = sum(n for (badge, _), n in grants.items() if badge == slug)
        plan.badge_removals.append(slug)
        removed = f"{name}: its rule file is gone; badge removed"
        change = Change(slug, "removed", [removed])
        if held:
            change.notes = [f"{removed} with its {_grants(held)}"]
            plan.refusals.append(
                f"{name}: its rule file is gone, but it has {_grants(held)}; removing the "
                "badge deletes them (restore the file with `enabled: false` to keep them)"
            )
        plan.changes.append(change)
    return plan


def _grants(n: int) -> str:
    return f"{n:,} grant{'s' if n != 1 else ''}"


def _listed(values: Sequence[Any]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _changed(
    plan: DeployPlan,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    grants: Mapping[tuple[str, str], int],
    query_changed: bool,
) -> Change:
    """The notes for a changed badge; refusals and level removals go into `plan`."""
    before: Mapping[str, Any] = old["definition"]
    slug, name = new["slug"], new["name"]
    parts: list[str] = []
    criteria = False  # whether the change can make more users earn it
    for key in ("kind", "period", "timezone"):
        if before.get(key) != new[key]:
            parts.append(f"{key} {before.get(key)} → {new[key]}")
            criteria = True
    if before.get("params", []) != new["params"]:
        parts.append("params changed")
        criteria = True
    if query_changed:
        parts.append("query changed")
        criteria = True
    old_levels = {lv["key"]: lv for lv in before.get("levels", [])}
    new_levels = {lv["key"]: lv for lv in new["levels"]}
    for key, level in new_levels.items():
        was = old_levels.get(key)
        if was is None:
            parts.append(f"level {key} added")
            criteria = True
            continue
        if _number(was.get("threshold")) != _number(level["threshold"]):
            parts.append(f"{key} threshold {was.get('threshold')} → {level['threshold']}")
            criteria = True
        # a one-level award without `levels:` has its level named after the badge
        renamed_along = (was.get("name"), level["name"]) == (before.get("name"), name)
        for field_name in ("name", "points", "icon"):
            if field_name == "name" and renamed_along:
                continue
            if was.get(field_name) != level[field_name]:
                parts.append(f"{key} {field_name} {was.get(field_name)} → {level[field_name]}")
        for field_name in ("description", "hint"):  # texts too long to quote
            if was.get(field_name) != level[field_name]:
                parts.append(f"{key} {field_name} changed")
    for key in old_levels:
        if key in new_levels:
            continue
        held = grants.get((slug, key), 0)
        if held:
            plan.level_removals.append((slug, key))
            plan.refusals.append(
                f"{name}: removing level {key} deletes its {_grants(held)} "
                "(keep the level, or deploy --force)"
            )
            parts.append(f"level {key} removed with its {_grants(held)}")
        else:
            parts.append(f"level {key} removed")
    if before.get("name") != name:
        parts.append(f"name {before.get('name')} → {name}")
    if before.get("description") != new["description"]:
        parts.append("description changed")
    for key in ("tags", "triggers"):
        if before.get(key, []) != new[key]:
            parts.append(f"{key} {_listed(before.get(key, []))} → {_listed(new[key])}")
    for key in ("timeout", "revoke"):
        if before.get(key) != new[key]:
            parts.append(f"{key} {before.get(key)} → {new[key]}")
    # the face (definitions deployed before it had one read as its defaults)
    for key, default in (("category", None), ("secret", False), ("order", None)):
        if before.get(key, default) != new[key]:
            parts.append(f"{key} {before.get(key, default)} → {new[key]}")
    if before.get("i18n", {}) != new["i18n"]:
        parts.append("i18n changed")
    if old["enabled"] and not new["enabled"]:
        parts.append("disabled: it stops running; existing grants stand")
    elif new["enabled"] and not old["enabled"]:
        parts.append("enabled again")
        criteria = True
    if criteria and new["enabled"]:
        parts.append(
            f"existing grants stand; run `plaudit backfill --select {slug}` to award new ones"
        )
    notes = [f"{name}: {'; '.join(parts)}"] if parts else []
    return Change(slug, "changed", notes)


def _query_changed(rule: Rule, old: Mapping[str, Any], config: Config) -> bool:
    """Whether the compiled SQL changed for another reason than the levels (whose keys
    and thresholds it embeds): the rule rendered with the deployed levels is compared
    with the deployed SQL."""
    levels = []
    for position, level in enumerate(old["definition"].get("levels", []), start=1):
        threshold = level.get("threshold")
        if isinstance(threshold, str):
            threshold = Decimal(threshold)
        levels.append(
            Level(level["key"], level["name"], threshold, level["points"], level["icon"], position)
        )
    try:
        before = replace(rule, levels=tuple(levels))
        compiled = {mode: render(before, mode, config).sql for mode in modes(before)}
    except RenderError:
        return True
    return bool(compiled != old["compiled"])


def _number(value: Any) -> Any:
    """Thresholds are stored as JSON numbers or, for decimals, strings: compare the values."""
    return json.loads(str(value)) if isinstance(value, str) else value
