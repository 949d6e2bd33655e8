"""Rendering a rule into the SQL the database executes.

The analyst's query is a Jinja template rendered in a sandbox: Jinja decides the *shape* of
the SQL, values never enter its text. `param()` and `filter()` render `($1::text[])[n]`:
the params are bound at execution as one array of text (each cast in SQL to its declared
type), however many a rule declares, so a literal `%` is just a character and the same text
runs in PL/pgSQL `EXECUTE ... USING`.
The rendered query must be one SELECT; the rule's kind macro (`sql/kinds/<kind>.sql`) then
wraps it into canonical rows (user_id, scope, level, achieved_at, value, meta, is_progress).
"""

from __future__ import annotations

import json
import re
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.ext import Extension
from pglast.parser import ParseError, parse_sql_json

from plaudit.errors import ParamError, RenderError
from plaudit.model.config import NAME_PATTERN, Config
from plaudit.model.denylist import forbidden_calls
from plaudit.model.dependencies import event_types
from plaudit.model.kinds import KINDS
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule
from plaudit.sqlfiles import sql_dir
from plaudit.sqlgen.sandbox import RuleSandbox

MODES: tuple[Mode, ...] = ("backfill", "incremental")
# The batch of events of an incremental run: a temporary table filled by the runner.
BATCH_TABLE = "pg_temp.plaudit_batch"
_DML = ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt")
# The longest rendered query: a rule is one SELECT (the bundled ones are under 2,000 characters)
MAX_QUERY = 1_000_000


@dataclass(frozen=True)
class Rendered:
    """A rule rendered for one mode: the canonical-row query and its placeholders' params."""

    rule: Rule
    mode: Mode
    query: str  # the analyst's SELECT, rendered
    sql: str  # the kind macro around it: what compiled_rule stores and run_rule executes


def sql_string(value: str) -> str:
    """A SQL string literal. Used only for names from rule files (level keys, event types)."""
    return "'" + value.replace("'", "''") + "'"


@cache
def environment(
    keep_trailing_newline: bool = False, extensions: tuple[type[Extension], ...] = ()
) -> RuleSandbox:
    """The sandbox rules render in (bounded: plaudit.sandbox); lint and the line mapper ask
    for variants of it."""
    env = RuleSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        loader=jinja2.FileSystemLoader(str(sql_dir())),
        keep_trailing_newline=keep_trailing_newline,
        extensions=list(extensions),
    )
    env.filters["sqlstring"] = sql_string
    return env


class _Batch:
    """`batch` in a template: the relation of this run's events, incremental mode only."""

    def __init__(self, rule: Rule, mode: Mode):
        self._rule, self._mode = rule, mode

    def __str__(self) -> str:
        if self._mode != "incremental":
            raise RenderError(
                f"{self._rule.slug}: `batch` is only defined in incremental mode; "
                "use it inside {% if is_incremental() %}"
            )
        return str(_helpers().batch(_target(self._rule)))


def _helpers() -> Any:
    """The macros of sql/helpers.sql: the SQL of the template helpers."""
    return environment().get_template("helpers.sql").module


def _target(rule: Rule, schema: str = "plaudit") -> dict[str, Any]:
    """What sql/helpers.sql's macros know of the rule they render for (their `r`)."""
    return {
        "slug": rule.slug,
        "triggers": event_types(rule),
        "schema": schema,
        "batch": BATCH_TABLE,
        "levels": len(rule.levels),
        "level_keys": [level.key for level in rule.levels],
    }


def _carries(rule: Rule) -> bool:
    """Whether the rule's kind carries a done user's progress forward (model/kinds.py)."""
    return KINDS[rule.kind].carries_progress


def _anchors(rule: Rule) -> bool:
    """Whether the rule's kind carries every anchored user's progress forward, not only a
    done user's (model/kinds.py)."""
    return KINDS[rule.kind].anchors_progress


def done(rule: Rule, schema: str, column: str) -> str:
    """SQL: the user `column` is done with the rule (sql/helpers.sql, `done`)."""
    return str(_helpers().done(_target(rule, schema), column, _carries(rule)))


def template_context(
    rule: Rule, mode: Mode, schema: str = "plaudit", skip_done: bool | None = None
) -> dict[str, Any]:
    """The template's helpers. `skip_done` (decided by a first render when not given):
    whether `affected()` (and, for awards, `unfinished()`) leave out users who are done
    with the rule."""
    if skip_done is None:
        skip_done = _skips_done(rule, mode, schema)
    helpers, target = _helpers(), _target(rule, schema)

    def placeholder(name: str) -> str:
        for position, p in enumerate(rule.params, start=1):
            if p.name == name:
                return str(helpers.placeholder(position, p.type))
        declared = ", ".join(p.name for p in rule.params) or "none"
        raise RenderError(f"{rule.slug}: unknown param {name!r} (declared: {declared})")

    def unfinished(column: str) -> str:
        # For users a rule finds through `batch`: only an award (no progress) may leave out
        # a done user; the progress of the other kinds must be read to stay exact.
        if not skip_done or _carries(rule):
            return "TRUE"
        return "NOT " + done(rule, schema, column)

    def affected(column: str) -> str:
        if mode == "backfill":
            return "TRUE"
        return str(
            helpers.affected(target, column, skip_done, _carries(rule), _anchors(rule))
        )

    def sql_filter(column: str, name: str) -> str:
        return str(helpers.filter(column, placeholder(name)))

    def badge(slug: str) -> str:
        # composite rules: another badge's grants (the runner orders rules by these references)
        if not isinstance(slug, str) or NAME_PATTERN.fullmatch(slug) is None:
            raise RenderError(f"{rule.slug}: badge() takes a badge slug, not {slug!r}")
        return str(helpers.badge(schema, slug))

    return {
        "mode": mode,
        "is_incremental": lambda: mode == "incremental",
        "param": placeholder,
        "filter": sql_filter,
        "affected": affected,
        "unfinished": unfinished,
        "batch": _Batch(rule, mode),
        "badge": badge,
    }


def _skips_done(rule: Rule, mode: Mode, schema: str) -> bool:
    """Whether an incremental run of `rule` may skip users who are done with it: a kind
    where that is exact, no scope (a new scope has every level still to reach), and for
    kinds with progress, users found through affected() only (the batch's users, whose
    progress the kind carries forward; a rule reading `batch` maps events to users itself)."""
    if mode != "incremental" or not KINDS[rule.kind].skips_done:
        return False
    if _carries(rule) and "batch" in _template_names(rule):
        return False
    try:
        context = template_context(rule, mode, schema, False)
        text = environment().from_string(rule.query).render(context)
        columns = output_columns(rule, text.strip().rstrip(";"))
    except (jinja2.TemplateError, RenderError):
        return False  # the real render reports it
    return columns is not None and "scope" not in columns


def _template_names(rule: Rule) -> set[str]:
    """The names a rule's template reads (helpers included); empty if it does not parse."""
    try:
        return set(meta.find_undeclared_variables(environment().parse(rule.query)))
    except jinja2.TemplateSyntaxError:
        return set()


def _template_line(exc: BaseException, name: str) -> int | None:
    """The template line an error was raised at: Jinja keeps it in the traceback."""
    line = None
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_query(rule: Rule, mode: Mode, config: Config | None = None) -> str:
    """The analyst's query rendered for `mode`, checked to be a single SELECT."""
    if mode not in MODES:
        raise RenderError(f"unknown mode {mode!r} (expected backfill or incremental)")
    if mode == "incremental" and not event_types(rule):
        raise RenderError(f"{rule.slug}: has no triggers, so it runs in backfill mode only")
    name = f"<rule {rule.slug}>"
    try:
        template = environment().from_string(rule.query)
        template.name = template.filename = name
        schema = config.schema if config else "plaudit"
        # on Citus, no shortcut for users done with the rule: its lookup of their grants
        # inside the batch's subquery is a correlated subquery Citus cannot plan
        skip_done = False if config and config.citus else None
        query = template.render(template_context(rule, mode, schema, skip_done))
        query = query.strip().rstrip(";")
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(
            f"{rule.location(exc.lineno - 1)}: template error: {exc.message}"
        ) from exc
    except RenderError as exc:
        line = _template_line(exc, name)
        raise RenderError(f"{rule.location((line or 1) - 1)}: {exc}") from exc
    except jinja2.TemplateError as exc:
        line = _template_line(exc, name)
        raise RenderError(f"{rule.location((line or 1) - 1)}: template error: {exc}") from exc
    if len(query) > MAX_QUERY:
        raise RenderError(
            f"{rule.location()}: {rule.slug}: the rendered query is {len(query):,} characters: "
            f"a rule query may have at most {MAX_QUERY:,}"
        )
    output_columns(rule, query)
    allowed = config.allow_functions if config else ()
    for offset, message in forbidden_calls(query, schema, allowed):
        line = query.count("\n", 0, offset)
        raise RenderError(f"{rule.location(line)}: {rule.slug}: {message}")
    return query


def output_columns(rule: Rule, query: str) -> tuple[str, ...] | None:
    """Check that `query` is a single SELECT and return its column names (None if `*`)."""
    try:
        tree = json.loads(parse_sql_json(query))
    except ParseError as exc:
        message, offset = exc.args
        line = query.count("\n", 0, offset)
        raise RenderError(
            f"{rule.location(line)}: {rule.slug}: SQL syntax error: {message}"
        ) from exc
    statements = tree.get("stmts", [])
    where = rule.location()
    problem = plain_select_problem(tree)
    if problem:
        raise RenderError(f"{where}: {rule.slug}: query {problem}")
    select = statements[0]["stmt"]["SelectStmt"]
    while "larg" in select:  # UNION & co: the first branch names the columns
        select = select["larg"]
    names = []
    for target in select.get("targetList", []):
        res = target["ResTarget"]
        if "name" in res:
            names.append(res["name"])
            continue
        fields = res.get("val", {}).get("ColumnRef", {}).get("fields", [])
        if fields and "A_Star" in fields[-1]:
            return None
        names.append(fields[-1]["String"]["sval"] if fields else "?column?")
    return tuple(names)


def plain_select_problem(tree: Any) -> str | None:
    """What keeps a parsed statement list from being one plain SELECT that writes nothing
    ("must be a SELECT, found UPDATE"), or None. Rule queries and test cases' SELECTs."""
    statements = tree.get("stmts", [])
    if len(statements) != 1:
        return f"must be a single SELECT statement, found {len(statements)} statements"
    (kind,) = statements[0]["stmt"].keys()
    if kind != "SelectStmt":
        return f"must be a SELECT, found {_kind_name(kind)}"
    for node_kind, node in _walk(tree):
        if node_kind in _DML:
            return f"must not modify data (found {_kind_name(node_kind)})"
        if node_kind == "SelectStmt" and ("intoClause" in node or "lockingClause" in node):
            return "must be a plain SELECT (no SELECT INTO, no FOR UPDATE)"
    return None


def _kind_name(node_kind: str) -> str:
    return re.sub(r"Stmt$", "", node_kind).upper()


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key[:1].isupper():
                yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def render(rule: Rule, mode: Mode, config: Config | None = None) -> Rendered:
    """The full SQL of one rule run: the kind macro around the analyst's query.

    `config` gives the schema (for `badge()`) and the default time zone; without it they
    are plaudit.yaml's defaults."""
    query = render_query(rule, mode, config)
    columns = output_columns(rule, query)
    if rule.kind not in KINDS:
        raise RenderError(
            f"{rule.location()}: {rule.slug}: kind {rule.kind!r} is not implemented yet"
        )
    kind = KINDS[rule.kind]
    required, optional = kind.required, kind.optional
    if columns is None:
        raise RenderError(
            f"{rule.location()}: {rule.slug}: name the query's columns instead of SELECT *: "
            f"a {rule.kind} rule reads {', '.join(required + optional)} by name"
        )
    missing = [c for c in required if c not in columns]
    if missing:
        raise RenderError(
            f"{rule.location()}: {rule.slug}: a {rule.kind} query must return "
            f"{', '.join(required)}; missing column {', '.join(missing)}"
        )
    has = {c: c in columns for c in optional}
    macro = getattr(environment().get_template(kind.macro).module, kind.name)
    schema = config.schema if config else "plaudit"
    # what the macro declares it takes, built from the rule and the registry entry
    wanted = set(macro.arguments)
    arguments = _macro_arguments(rule, has, config.timezone if config else "UTC", wanted)
    if "citus" in wanted:  # the shape Citus can run shard by shard (docs/citus.md)
        arguments["citus"] = bool(config and config.citus)
    if mode == "incremental":

        def held(user: str, level: str, scope: str) -> str:
            return str(_helpers().held_level(_target(rule, schema), user, level, scope))

        if "held" in wanted:
            arguments["held"] = held
        # streak: reads users from their last active period (unscoped rules only)
        # (not on Citus: a correlated lookup of the user's last grant, which Citus cannot plan)
        if "window" in wanted and not has.get("scope") and not (config and config.citus):
            arguments["window"] = _streak_window(rule, schema, held)
        if ("carry" in wanted and kind.carries_progress and _skips_done(rule, mode, schema)
                and not (config and config.citus)):
            arguments["carry"] = _carry(rule, schema)
    sql = str(macro(query, **arguments)).strip()
    if mode == "incremental" and kind.has_progress and "batch" not in _template_names(rule):
        # stale progress of the batch's users goes (sql/helpers.sql, `clearing`)
        sql = str(_helpers().clearing(_target(rule, schema), sql))
    return Rendered(rule=rule, mode=mode, query=query, sql=sql)


def _carry(rule: Rule, schema: str) -> dict[str, str]:
    """What count, sum and gauge need to carry a done (gauge) or anchored (count, sum) user's
    progress forward in an incremental run (affected() leaves such users out of `query`):
    their progress rows, and the rule's query for every batch user, read by the macro only
    after `through_at`."""
    text = environment().from_string(rule.query).render(
        template_context(rule, "incremental", schema, False)
    )
    progress = str(_helpers().carried_users(_target(rule, schema), _anchors(rule)))
    return {"query": text.strip().rstrip(";"), "progress": progress}


def _streak_window(
    rule: Rule, schema: str, held: Callable[[str, str, str], str]
) -> dict[str, Any] | None:
    """What the streak kind needs to read users from their last active period in
    incremental runs (sql/kinds/streak.sql): only when the rule's users come from
    affected(), so that the batch's users are the users to re-check."""
    if "batch" in _template_names(rule):
        return None
    helpers, target = _helpers(), _target(rule, schema)
    return {
        "batch": str(helpers.batch(target)),
        "schema": schema,
        "badge": sql_string(rule.slug),
        "batch_start": str(helpers.batch_start(target)),
        "held": held,
        "trusted": str(helpers.trusted(target)),
    }


def _macro_arguments(
    rule: Rule, has: Mapping[str, bool], timezone: str, wanted: set[str]
) -> dict[str, Any]:
    """The kind macro's arguments besides the query, those of `wanted` (the macro's own):
    levels, whether each optional column is there (`has_<column>`), calendar."""
    kind = KINDS[rule.kind]
    if "level" in kind.optional and len(rule.levels) > 1 and not has["level"]:
        # the query picks the level: with several, it must say which
        raise RenderError(
            f"{rule.location()}: {rule.slug}: {kind.with_article} with several levels "
            "must return a level column"
        )
    if kind.threshold == "integer":
        for level in rule.levels:
            if level.threshold is None or level.threshold != int(level.threshold):
                raise RenderError(
                    f"{rule.file or rule.path.as_posix()}:{level.line}: {rule.slug}: "
                    f"{rule.kind} thresholds must be whole numbers"
                )
    arguments: dict[str, Any] = {f"has_{column}": has[column] for column in kind.optional}
    arguments["levels"] = rule.levels
    arguments["default_level"] = rule.levels[0].key if rule.levels else None
    if kind.default_period is not None:
        arguments["period"] = rule.period or kind.default_period
        arguments["timezone"] = rule.timezone or timezone
    return {name: value for name, value in arguments.items() if name in wanted}


def modes(rule: Rule) -> tuple[Mode, ...]:
    """The modes a rule runs in: incremental only when events (or grants of the badges it
    reads) trigger it."""
    return MODES if event_types(rule) else ("backfill",)


def bind_params(rule: Rule, given: Mapping[str, str]) -> list[str | None]:
    """Values for the rule's placeholders, in order, checked against the declared types."""
    declared = {p.name: p.type for p in rule.params}
    for name in given:
        if name not in declared:
            names = ", ".join(declared) or "none"
            raise ParamError(f"unknown param {name!r} for rule {rule.slug} (declared: {names})")
    return [_typed(p.name, p.type, given[p.name]) if p.name in given else None for p in rule.params]


def _typed(name: str, type_: str, raw: str) -> str:
    """The canonical text of `raw` as `type_`, so the database cast cannot fail later."""
    try:
        if type_ in ("bigint", "integer"):
            value = int(raw.strip())
            limit = 2**63 if type_ == "bigint" else 2**31
            if not -limit <= value < limit:
                raise ValueError
            return str(value)
        if type_ == "numeric":
            number = Decimal(raw.strip())
            if not number.is_finite():
                raise ValueError
            return str(number)
        if type_ == "boolean":
            return {
                "true": "true",
                "t": "true",
                "yes": "true",
                "1": "true",
                "false": "false",
                "f": "false",
                "no": "false",
                "0": "false",
            }[raw.strip().lower()]
        if type_ == "date":
            return date.fromisoformat(raw.strip()).isoformat()
        if type_ == "timestamptz":
            return datetime.fromisoformat(raw.strip()).isoformat()
        if type_ == "uuid":
            return str(uuid.UUID(raw.strip()))
        return raw
    except (ValueError, KeyError, InvalidOperation):
        raise ParamError(
            f"invalid value for param {name!r}: {raw!r} is not a valid {type_}"
        ) from None
