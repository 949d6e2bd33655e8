"""The contract check: what a rule's query returns, as the database sees it, without running it.

Offline checks read column names from the SQL text; only the database knows their types
(and that the tables exist). Each rendered query is prepared and described (the protocol's
Parse and Describe messages): the server analyses it and reports the result columns and
their types, and nothing is executed, however big the tables. The check then holds them
against what the rule's kind reads: its columns, with types it can use, and a user id of
the configured type. It runs in `deploy`, `preview` and `validate --db`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
from pglast.parser import ParseError, parse_sql_json
from psycopg import pq

from plaudit.errors import Problem, RenderError
from plaudit.model.config import CONFIG_FILE, Config, Group
from plaudit.model.kinds import COLUMN_TYPES, KINDS
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule
from plaudit.runtime.db import Database, describe
from plaudit.sqlgen.analysis import relations
from plaudit.sqlgen.groups import members_sql
from plaudit.sqlgen.render import modes, render, render_query
from plaudit.sqlgen.sourcemap import MappedQuery, located, render_mapped, rule_file

TIMES = ("timestamp with time zone", "timestamp without time zone", "date")
NUMBERS = ("smallint", "integer", "bigint", "numeric", "real", "double precision")
TEXTS = ("text", "character varying", "character")
# The types each configured user id type accepts from a query (a narrower integer widens).
USER_ID_TYPES = {
    "bigint": ("bigint", "integer", "smallint"),
    "integer": ("integer", "smallint"),
    "text": TEXTS,
    "uuid": ("uuid",),
}
# The database types of each type a kind's column must be (model/kinds.py COLUMN_TYPES),
# and how to say it; `any` (scope: stored as text) and `user_id` (USER_ID_TYPES) are not here.
ACCEPTED = {
    "time": (TIMES, "a timestamptz (timestamp and date also work)"),
    "number": (NUMBERS, "a number"),
    "text": (TEXTS, "text (a level key)"),
    "json": (("jsonb", "json"), "jsonb"),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as format_type() prints it: "bigint", "timestamp with time zone"
    line: int  # file line of the column in the query block


def check_contracts(db: Database, config: Config, rules: Sequence[Rule]) -> list[Problem]:
    """The contract problems of `rules` in every mode they run in; nothing is executed and
    nothing is written (the checks run in a transaction that is rolled back)."""
    problems: list[Problem] = []
    role = _runner_role(db)
    with db.conn.transaction(force_rollback=True):
        if any("incremental" in modes(rule) for rule in rules):
            db.execute("authoring_batch_table")  # what `affected()` and `batch` read
        for rule in rules:
            found = {mode: check_contract(db, config, rule, mode) for mode in modes(rule)}
            for mode, mine in found.items():
                for problem in mine:
                    others = [m for m in found if m != mode]
                    if others and not all(problem in found[m] for m in others):
                        suffixed = f"{problem.message} ({mode} mode)"
                        problem = Problem(problem.file, problem.line, suffixed)
                    if problem not in problems:
                        problems.append(problem)
            if role is not None and not any(found.values()):
                problems += _runner_role_problems(db, config, rule, role)
    return problems


def read_tables(rules: Sequence[Rule], config: Config) -> list[str]:
    """The tables the rules' queries read, outside plaudit's schema, as the rules name them."""
    names: set[str] = set()
    for rule in rules:
        for mode in modes(rule):
            for table_schema, table in relations(render_query(rule, mode, config)):
                if table_schema in (config.schema, "pg_temp", "pg_catalog"):
                    continue
                names.add(f"{table_schema}.{table}" if table_schema else table)
    return sorted(names)


def _runner_role(db: Database) -> str | None:
    """The runner role rules run as (`init --runner-role`), if the schema has one."""
    installed = db.one("meta_exists")
    row = db.one("rule_role") if installed and installed["installed"] else None
    return None if row is None else row["role"]


def _runner_role_problems(
    db: Database, config: Config, rule: Rule, role: str
) -> list[Problem]:
    """The rule runs as the runner role: the tables it reads that the role may not read yet
    are a problem now, with the GRANTs that fix it, not a failed backfill later."""
    grants = [r["statement"] for r in db.execute(
        "missing_grants", [role, read_tables([rule], config)])]
    if not grants:
        return []
    return [Problem(rule_file(rule), rule.query_line,
                    f"the runner role {role} may not read what the query reads; as "
                    f"the tables' owner, run: {' '.join(grants)}")]


def check_contract(db: Database, config: Config, rule: Rule, mode: Mode) -> list[Problem]:
    """One rule in one mode; the caller holds a transaction (and the batch table)."""
    try:
        mapped = render_mapped(rule, mode, config)
        compiled = render(rule, mode, config).sql
    except RenderError as exc:  # `plaudit validate` says more; here it is one problem
        problem = located(rule, str(exc))
        return [Problem(problem.file, problem.line, f"{rule.slug}: {problem.message}")]
    try:
        described = describe_columns(db, mapped.text)
    except psycopg.Error as exc:
        line = rule.query_line
        if exc.diag.statement_position:  # 1-based, in characters of the rendered query
            line += mapped.template_line(int(exc.diag.statement_position) - 1) - 1
        return [_compile_problem(rule, line, exc)]
    mismatches = list(_mismatches(rule, config, _columns(db, rule, mapped, described)))
    if mismatches:  # the kind macro around the query would fail on them, less clearly
        return mismatches
    try:
        describe_columns(db, compiled)  # the kind macro around it must compile as well
    except psycopg.Error as exc:
        return [_compile_problem(rule, rule.query_line, exc)]
    return []


def _compile_problem(rule: Rule, line: int, exc: psycopg.Error) -> Problem:
    message = f"{rule.slug}: the query does not compile: {describe(exc)}"
    return Problem(rule.file or rule.path.as_posix(), line, message)


def _columns(
    db: Database, rule: Rule, mapped: MappedQuery, described: Sequence[tuple[str, int]]
) -> list[Column]:
    """The described columns with their type names and file lines."""
    rows = db.execute("type_names", [sorted({oid for _, oid in described})])
    names = {row["oid"]: row["name"] for row in rows}
    lines = list(_target_lines(rule, mapped, len(described)))
    return [
        Column(name, names.get(oid, "unknown"), line)
        for (name, oid), line in zip(described, lines, strict=True)
    ]


def describe_columns(db: Database, sql: str) -> list[tuple[str, int]]:
    """Parse and Describe without executing (libpq PQprepare, PQdescribePrepared); the
    unnamed statement is replaced by the next one, so nothing is left behind. Runs in a
    savepoint, so a failure leaves the caller's transaction usable."""
    conn = db.conn
    with conn.transaction():
        pgconn = conn.pgconn
        prepared = pgconn.prepare(b"", sql.encode(), None)
        if prepared.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.errors.error_from_result(prepared, encoding=conn.info.encoding)
        result = pgconn.describe_prepared(b"")
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
        fields = []
        for index in range(result.nfields):
            name = result.fname(index)
            fields.append(((name or b"").decode(), result.ftype(index)))
        return fields


def _target_lines(rule: Rule, mapped: MappedQuery, count: int) -> Iterator[int]:
    """The file line of each output column, from the SELECT list's positions (the query
    block's first line when the list cannot be matched, e.g. `SELECT *`)."""
    try:
        tree = json.loads(parse_sql_json(mapped.text))
        select = tree["stmts"][0]["stmt"]["SelectStmt"]
        while "larg" in select:
            select = select["larg"]
        targets = select.get("targetList", [])
    except (ParseError, KeyError, IndexError):
        targets = []
    encoded = mapped.text.encode()
    if len(targets) != count:
        yield from (rule.query_line for _ in range(count))
        return
    for target in targets:
        offset = len(encoded[: target["ResTarget"].get("location", 0)].decode(errors="ignore"))
        yield rule.query_line + mapped.template_line(offset) - 1


def _mismatches(rule: Rule, config: Config, columns: Sequence[Column]) -> Iterator[Problem]:
    file = rule.file or rule.path.as_posix()
    kind = KINDS[rule.kind]  # render() has rejected an unknown kind
    required, optional = kind.required, kind.optional
    by_name: dict[str, Column] = {}
    for column in columns:
        if column.name in by_name and column.name in required + optional:
            message = f"{rule.slug}: the query returns column {column.name} twice"
            yield Problem(file, column.line, message)
        by_name.setdefault(column.name, column)
    missing = [name for name in required if name not in by_name]
    if missing:
        returned = ", ".join(c.name for c in columns) or "no columns"
        message = (
            f"{rule.slug}: {kind.with_article} query must return {', '.join(missing)}; "
            f"the query returns {returned}"
        )
        yield Problem(file, rule.query_line, message)
    for name in required + optional:
        if name not in by_name:
            continue
        column = by_name[name]
        if COLUMN_TYPES[name] == "user_id":
            if column.type not in USER_ID_TYPES[config.user_id_type]:
                message = (
                    f"{rule.slug}: column user_id is {column.type}, but plaudit.yaml says "
                    f"user_id_type: {config.user_id_type}"
                )
                yield Problem(file, column.line, message)
        elif COLUMN_TYPES[name] in ACCEPTED:
            accepted, wanted = ACCEPTED[COLUMN_TYPES[name]]
            if column.type not in accepted:
                message = (
                    f"{rule.slug}: column {name} is {column.type}; "
                    f"{kind.with_article} query needs {wanted}"
                )
                yield Problem(file, column.line, message)


def check_groups(db: Database, config: Config) -> list[Problem]:
    """The leaderboard groups' SQL against the database (deploy): it compiles, returns a
    group_id and a user_id of the configured type, and the runner role may read what it
    reads. Described, never executed."""
    problems: list[Problem] = []
    role = _runner_role(db)
    accepted = USER_ID_TYPES[config.user_id_type]
    for group in config.groups:
        def problem(message: str, group: Group = group) -> Problem:
            return Problem(CONFIG_FILE, group.line, f"group '{group.name}': {message}")

        try:
            described = dict(describe_columns(db, members_sql(group)))
        except psycopg.Error as exc:
            problems.append(problem(
                "the query must return the columns group_id and user_id and compile: "
                + describe(exc)))
            continue
        (user_type,) = (r["name"] for r in db.execute("type_names", [[described["user_id"]]]))
        if user_type not in accepted:
            problems.append(problem(
                f"user_id is {user_type}; the configured user_id_type is {config.user_id_type}"))
            continue
        tables = sorted({f"{s}.{t}" if s else t for s, t in relations(group.query)
                         if s not in (config.schema, "pg_temp", "pg_catalog")})
        grants = [] if role is None else [
            r["statement"] for r in db.execute("missing_grants", [role, tables])]
        if grants:
            problems.append(problem(
                f"the runner role {role} may not read what the query reads; as the tables' "
                f"owner, run: {' '.join(grants)}"))
    return problems
