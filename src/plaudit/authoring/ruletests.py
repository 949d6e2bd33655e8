"""`plaudit test`: running rule test cases (authoring.testcases) on the database.

Each case runs in a scratch plaudit schema (created, like `init` creates the real one,
inside a transaction that is rolled back: nothing is left behind) with the rule and the
rules it reads through badge() deployed into it by the one deploy (runtime.deploy). The app
tables the queries read are replaced, for the case, by temporary copies holding only the
given rows (empty when not given). The rules run through the engine's entry points, as in
production: in backfill mode (Engine.run_rule, in run order) over the given rows, in
incremental mode (the event loop, Engine.run_batch_rules) on the case's events (by default
one event of the rule's first trigger per user the case expects grants or progress for).
A case passes when the rule's grants are exactly the expected ones and, when it gives
`progress:`, so are its user_progress rows. Times without an offset are in plaudit.yaml's timezone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from pglast.parser import ParseError, parse_sql_json
from psycopg import sql

from plaudit.authoring.testcases import Case
from plaudit.errors import PlauditError
from plaudit.model.config import Config
from plaudit.model.denylist import forbidden_calls
from plaudit.model.dependencies import event_types, references
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule
from plaudit.runtime.contract import describe_columns
from plaudit.runtime.db import Database, describe, render_sql
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Engine
from plaudit.sqlfiles import query
from plaudit.sqlgen.analysis import relations
from plaudit.sqlgen.render import plain_select_problem, render_query

Grant = tuple[str, str, str, datetime]  # user_id, level, scope, achieved_at
# user_id, scope, value, next_level, expires_at
Progress = tuple[str, str, Decimal, str | None, datetime | None]


@dataclass
class Outcome:
    case: Case
    mode: Mode
    expected: list[Grant] = field(default_factory=list)
    actual: list[Grant] = field(default_factory=list)
    error: str | None = None
    # None when the case does not check progress
    expected_progress: list[Progress] | None = None
    actual_progress: list[Progress] = field(default_factory=list)

    @property
    def grants_passed(self) -> bool:
        return sorted(self.expected) == sorted(self.actual)

    @property
    def progress_passed(self) -> bool:
        return self.expected_progress is None or (
            _sorted_progress(self.expected_progress) == _sorted_progress(self.actual_progress)
        )

    @property
    def passed(self) -> bool:
        return self.error is None and self.grants_passed and self.progress_passed


class CaseError(PlauditError):
    """A case cannot run (not a failure of the rule)."""

    exit_code = 1


def run_cases(
    conn: psycopg.Connection[dict[str, Any]],
    config: Config,
    rules: Sequence[Rule],
    cases: Sequence[Case],
) -> list[Outcome]:
    """Run `cases` in a scratch schema on `conn`; everything is rolled back afterwards."""
    scratch = f"{config.schema}_test_{conn.info.backend_pid}"
    scratch_config = replace(config, schema=scratch)
    db = Database(conn, scratch)
    outcomes: list[Outcome] = []
    with conn.transaction(force_rollback=True):
        engine = Engine(db, scratch_config)
        engine.init()
        # the rules run as the site's runner role, as they would in production
        db.one("adopt_rule_role", [_rule_role(Database(conn, config.schema))])
        db.execute("set_timezone", [config.timezone])
        by_slug = {rule.slug: rule for rule in rules}
        needed: dict[str, Rule] = {}
        for case in cases:
            for rule in _with_dependencies(case.rule, by_slug):
                needed[rule.slug] = rule
        # deployed the production way (enabled: a case tests a rule whether or not the site
        # runs it yet); the queries' tables exist only inside each case
        deploy_rules(
            engine, [replace(rule, enabled=True) for rule in needed.values()], contracts=False
        )
        for case in cases:
            chain = engine.run_order(_with_dependencies(case.rule, by_slug))
            for mode in case.modes:
                outcomes.append(_run(engine, config, case, chain, mode, list(needed)))
    return outcomes


def _rule_role(real: Database) -> str | None:
    """The runner role of the project's schema, if it is installed and has one."""
    installed = real.one("meta_exists")
    if not installed or not installed["installed"]:
        return None
    row = real.one("rule_role")
    return row["role"] if row else None


def _with_dependencies(rule: Rule, by_slug: dict[str, Rule]) -> list[Rule]:
    found: dict[str, Rule] = {}
    waiting = [rule]
    while waiting:
        current = waiting.pop()
        if current.slug not in found:
            found[current.slug] = current
            waiting += [by_slug[s] for s in references(current) if s in by_slug]
    return list(found.values())


def _run(
    engine: Engine, config: Config, case: Case, chain: list[Rule], mode: Mode,
    deployed: Sequence[str],
) -> Outcome:
    """One case in one mode, run the way production runs rules: a backfill of each rule in
    run order (Engine.run_rule, its dependents re-checked), or the event loop on a batch of
    the case's events (Engine.run_batch_rules). Rolled back afterwards."""
    db = engine.db
    zone = ZoneInfo(config.timezone)
    outcome = Outcome(case, mode, expected=[_expected(g, zone) for g in case.expect])
    if case.progress is not None:
        outcome.expected_progress = [_expected_progress(p, zone) for p in case.progress]
    try:
        with db.conn.transaction(force_rollback=True):
            _tables(db, engine.config, case, chain, mode, config)
            unknown = sorted(set(case.params) - {p.name for p in case.rule.params})
            if unknown:
                raise CaseError(f"unknown param {', '.join(unknown)}")
            batch: list[dict[str, Any]] = []
            if mode == "incremental":
                if case.params:
                    raise CaseError("params apply to backfills only: give `modes: [backfill]`")
                batch = _batch(case)
                db.execute("test_batch", [json.dumps(batch, default=_json)])
                # the case's rule and the rules it reads; the other cases' rules stay out
                others = [slug for slug in deployed if slug not in {r.slug for r in chain}]
                runs = engine.run_batch_rules(exclude=others)
            else:
                runs = [
                    engine.run_rule(
                        rule, "backfill", case.params if rule is case.rule else {},
                        then=[r.slug for r in chain[index + 1:]],
                    )
                    for index, rule in enumerate(chain)
                ]
            for run in runs:
                if run.status != "ok":
                    raise CaseError(f"{run.message}")
            # events that trigger no run of the rule would make the case pass untested
            if mode == "incremental" and batch and case.rule.slug not in {r.slug for r in runs}:
                raise CaseError(
                    f"the case's events trigger no run of {case.rule.slug} (its triggers: "
                    f"{', '.join(event_types(case.rule))})"
                )
            outcome.actual = [
                (r["user_id"], r["level"], r["scope"], r["achieved_at"])
                for r in db.execute("test_grants", [case.rule.slug])
            ]
            if case.progress is not None:
                outcome.actual_progress = [
                    (r["user_id"], r["scope"], r["value"], r["next_level"], r["expires_at"])
                    for r in db.execute("test_progress", [case.rule.slug])
                ]
    except (PlauditError, psycopg.Error) as exc:
        # the database's own words, without the name of plaudit's query that hit them
        cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
        outcome.error = describe(cause) if isinstance(cause, psycopg.Error) else str(exc)
    return outcome


def _tables(
    db: Database, scratch: Config, case: Case, chain: list[Rule], mode: Mode, config: Config
) -> None:
    """Shadow every app table the rules read with a temporary copy holding the given rows."""
    read: dict[str, None] = dict.fromkeys(case.given)
    for rule in chain:
        for schema, table in relations(render_query(rule, mode, scratch)):
            if schema is None:
                read.setdefault(table)
            elif schema not in (scratch.schema, "pg_temp", "pg_catalog"):
                raise CaseError(
                    f"{rule.slug} reads {schema}.{table}: a test case can only give rows "
                    "for tables the query names without a schema"
                )
    for table in read:
        rows = case.given.get(table, [])
        if isinstance(rows, str):
            select = checked_select(table, rows, config)
            try:
                db.conn.execute(_given_statement(db, select))
            except psycopg.Error as exc:
                raise CaseError(f"given '{table}': {describe(exc)}") from exc
            db.execute("test_table", [table, None, "pg_temp.plaudit_test_given"])
            db.execute("test_given_drop")
        else:
            db.execute("test_table", [table, json.dumps(rows, default=_json), None])
        db.execute("grant_rule_role", [f"pg_temp.{table}"])


def _given_statement(db: Database, select: str) -> str:
    """The statement filling pg_temp.plaudit_test_given with the rows of a case's SELECT,
    read through query_rows (the runner role's boundary): its columns named and typed as
    the database describes them (nothing is executed to find out)."""
    columns = describe_columns(db, select)
    types = {row["oid"]: row["name"] for row in db.execute("type_names", [[o for _, o in columns]])}
    definition = ", ".join(
        f"{sql.Identifier(name).as_string(db.conn)} {types[oid]}" for name, oid in columns
    )
    return render_sql(
        query("test_given"), db.schema,
        given=sql.Literal(select).as_string(db.conn), columns=definition,
    )


def checked_select(table: str, text: str, config: Config) -> str:
    """A case's SELECT giving the rows of `table`, checked like a rule's query: one plain
    SELECT that writes nothing and calls nothing on the deny list (it runs on the database
    as the CLI's user, and is the only text that ever completes a statement of plaudit's)."""
    text = text.strip().rstrip(";").strip()
    what = f"given '{table}'"
    try:
        tree = json.loads(parse_sql_json(text))
    except ParseError as exc:
        raise CaseError(f"{what}: SQL syntax error: {exc.args[0]}") from exc
    problem = plain_select_problem(tree)
    if problem:
        raise CaseError(f"{what} {problem}")
    for _, message in forbidden_calls(text, config.schema, config.allow_functions):
        raise CaseError(f"{what}: {message}")
    return text


def _batch(case: Case) -> list[dict[str, Any]]:
    if case.events is not None:
        return case.events
    trigger = event_types(case.rule)[0]  # a composite's first: a grant of a badge it reads
    users = dict.fromkeys(str(row["user_id"]) for row in [*case.expect, *(case.progress or [])])
    return [{"type": trigger, "user_id": user} for user in users]


def _json(value: Any) -> Any:
    if isinstance(value, date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _expected(grant: dict[str, Any], zone: ZoneInfo) -> Grant:
    return (
        str(grant["user_id"]),
        str(grant["level"]),
        str(grant.get("scope") or ""),
        _moment(grant["achieved_at"], zone),
    )


def _expected_progress(row: dict[str, Any], zone: ZoneInfo) -> Progress:
    expires = row.get("expires_at")
    return (
        str(row["user_id"]),
        str(row["scope"]),
        Decimal(str(row["value"])),
        None if row["next_level"] is None else str(row["next_level"]),
        None if expires is None else _moment(expires, zone),
    )


def _sorted_progress(rows: list[Progress]) -> list[Progress]:
    return sorted(rows, key=lambda row: (row[0], row[1]))  # (user_id, scope) is the key


def _moment(value: str | date, zone: ZoneInfo) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    return value if value.tzinfo else value.replace(tzinfo=zone)


# -- reporting -------------------------------------------------------------------------------


def format_grant(grant: Grant, zone: ZoneInfo) -> str:
    user_id, level, scope, achieved_at = grant
    moment = achieved_at.astimezone(zone).isoformat(sep=" ")
    return f"user_id={user_id} level={level} scope={scope!r} achieved_at={moment}"


def format_failure(outcome: Outcome, zone: ZoneInfo) -> str:
    case = outcome.case
    lines = [f"{case.file}:{case.line}: {case.id} failed in {outcome.mode} mode"]
    if outcome.error is not None:
        lines.append(f"  error: {outcome.error}")
        return "\n".join(lines)
    if not outcome.grants_passed:
        for title, rows, other in (
            ("expected", outcome.expected, outcome.actual),
            ("actual", outcome.actual, outcome.expected),
        ):
            lines.append(f"  {title} ({len(rows)} grant{'s' if len(rows) != 1 else ''}):")
            for grant in sorted(rows):
                mark = " " if grant in other else ("-" if title == "expected" else "+")
                lines.append(f"  {mark} {format_grant(grant, zone)}")
    if outcome.expected_progress is not None and not outcome.progress_passed:
        for title, progress, other_progress in (
            ("expected", outcome.expected_progress, outcome.actual_progress),
            ("actual", outcome.actual_progress, outcome.expected_progress),
        ):
            count = f"{len(progress)} row{'s' if len(progress) != 1 else ''}"
            lines.append(f"  {title} progress ({count}):")
            for row in _sorted_progress(progress):
                mark = " " if row in other_progress else ("-" if title == "expected" else "+")
                lines.append(f"  {mark} {format_progress(row, zone)}")
    return "\n".join(lines)


def format_progress(row: Progress, zone: ZoneInfo) -> str:
    user_id, scope, value, next_level, expires_at = row
    level = "null" if next_level is None else next_level
    text = f"user_id={user_id} scope={scope!r} value={value.normalize():f} next_level={level}"
    if expires_at is not None:
        text += f" expires_at={expires_at.astimezone(zone).isoformat(sep=' ')}"
    return text
