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
from plaudit.model.modes import Mode
from plaudit.model.rules import Kind, Rule
from plaudit.sqlfiles import sql_dir
from plaudit.sqlgen.sandbox import RuleSandbox

MODES: tuple[Mode, ...] = ("backfill", "incremental")
# The batch of events of an incremental run: a temporary table filled by the runner.
BATCH_TABLE = "pg_temp.plaudit_batch"
# Columns each kind needs from the analyst's query, and the optional ones it understands.
KIND_COLUMNS: Mapping[Kind, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "count": (("user_id", "occurred_at"), ("scope",)),
    "sum": (("user_id", "occurred_at", "amount"), ("scope",)),
    "streak": (("user_id", "occurred_at"), ("scope",)),
    "gauge": (("user_id", "value", "achieved_at"), ("scope",)),
    "growth": (("user_id", "occurred_at"), ("amount", "scope")),
    "award": (("user_id", "achieved_at"), ("level", "scope", "meta")),
}
# Kinds whose thresholds count things (rows, periods): whole numbers only.
WHOLE_THRESHOLDS: tuple[Kind, ...] = ("count", "streak")
# The calendar kinds and their period when the rule names none.
DEFAULT_PERIODS: Mapping[Kind, str] = {"streak": "day", "growth": "month"}
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
        return (
            "(SELECT event_id, type, user_id, occurred_at, payload "
            f"FROM {BATCH_TABLE} WHERE {_for_rule(self._rule)})"
        )


def _trigger_list(rule: Rule) -> str:
    return ", ".join(sql_string(t) for t in event_types(rule))


def _for_rule(rule: Rule, alias: str = "") -> str:
    """SQL: the batch's events of the rule's types that are for it: every rule's, or deferred
    for it alone (event.rule, 004_events.sql)."""
    column = f"{alias}." if alias else ""
    return (
        f"{column}type IN ({_trigger_list(rule)}) "
        f"AND ({column}rule IS NULL OR {column}rule = {sql_string(rule.slug)})"
    )


# Kinds whose grants an event can only add at or after its own time: incremental runs do
# not read again the history of a user who holds every level. Not streak (its progress is
# the current run, which goes on after the last level) nor growth (a month's growth is dated
# at the month, before the event that completes it). An award has no progress, so such a
# user is simply left out; the others keep their progress exact by carrying it forward from
# user_progress.through_at (CARRIES_PROGRESS_KINDS, the `carry` of their macros).
SKIPS_DONE_KINDS: tuple[Kind, ...] = ("count", "sum", "gauge", "award")
CARRIES_PROGRESS_KINDS: tuple[Kind, ...] = ("count", "sum", "gauge")


def trusted(rule: Rule, schema: str) -> str:
    """SQL: whether incremental shortcuts may trust the rule's grants and progress, i.e.
    the rule is not due (new or changed since its last complete backfill: 003_deploy.sql).
    One lookup per run (an InitPlan); an undeployed rule is not trusted."""
    return (
        f"coalesce((SELECT plaudit_due.due IS NULL FROM {schema}.badge AS plaudit_due "
        f"WHERE plaudit_due.slug = {sql_string(rule.slug)}), false)"
    )


def batch_start(rule: Rule) -> str:
    """SQL: the time of the batch's earliest event among the rule's triggers."""
    return (
        f"(SELECT min(plaudit_first.occurred_at) FROM {BATCH_TABLE} AS plaudit_first "
        f"WHERE {_for_rule(rule, 'plaudit_first')})"
    )


def held_before_batch(rule: Rule, schema: str, column: str) -> str:
    """SQL: how many of the rule's levels the user `column` holds by the rule (unscoped; a
    manual grant is not the rule's verdict), achieved no later than the batch's earliest
    event. All of them: the user is done with the rule."""
    return (
        f"(SELECT count(*) FROM {schema}.user_badge AS plaudit_done "
        f"WHERE plaudit_done.user_id = {column} "
        f"AND plaudit_done.badge = {sql_string(rule.slug)} AND plaudit_done.scope = '' "
        f"AND plaudit_done.source = 'rule' "
        f"AND plaudit_done.achieved_at <= {batch_start(rule)})"
    )


def held_level(rule: Rule, schema: str, user: str, level: str, scope: str) -> str:
    """SQL: the user holds this level of the rule in this scope, achieved no later than the
    batch's earliest event (so no row of the batch can move its date), and the rule is not
    due (its grants were computed by its current SQL)."""
    return (
        f"({trusted(rule, schema)} AND EXISTS (SELECT FROM {schema}.user_badge AS plaudit_held "
        f"WHERE plaudit_held.user_id = {user} AND plaudit_held.badge = {sql_string(rule.slug)} "
        f"AND plaudit_held.level = {level} AND plaudit_held.scope = {scope} "
        f"AND plaudit_held.achieved_at <= {batch_start(rule)}))"
    )


def done(rule: Rule, schema: str, column: str) -> str:
    """SQL: the user `column` is done with the rule: it is not due, the user holds every
    level, each achieved no later than the batch's earliest event, and (kinds with progress)
    their progress counts the source up to a time before that event. Such a user cannot
    gain a grant nor an earlier date from the batch (an event adds rows dated at or after
    it), and their progress is carried forward from `through_at`."""
    condition = (
        f"{trusted(rule, schema)} AND {held_before_batch(rule, schema, column)} = "
        f"{len(rule.levels)}"
    )
    if rule.kind in CARRIES_PROGRESS_KINDS:
        # a scalar lookup, not EXISTS: PostgreSQL would hash an EXISTS over every progress
        # row of the badge (measured: 130 ms a run at 100k users) instead of probing the key
        condition += (
            f" AND (SELECT plaudit_through.through_at FROM {schema}.user_progress "
            f"AS plaudit_through WHERE plaudit_through.user_id = {column} "
            f"AND plaudit_through.badge = {sql_string(rule.slug)} "
            f"AND plaudit_through.scope = '') < {batch_start(rule)}"
        )
    return f"({condition})"


def _batch_users(rule: Rule) -> str:
    return (
        f"SELECT plaudit_b.user_id FROM {BATCH_TABLE} AS plaudit_b "
        f"WHERE {_for_rule(rule, 'plaudit_b')}"
    )


def template_context(
    rule: Rule, mode: Mode, schema: str = "plaudit", skip_done: bool | None = None
) -> dict[str, Any]:
    """The template's helpers. `skip_done` (decided by a first render when not given):
    whether `affected()` (and, for awards, `unfinished()`) leave out users who are done
    with the rule."""
    if skip_done is None:
        skip_done = _skips_done(rule, mode, schema)

    def placeholder(name: str) -> str:
        for position, p in enumerate(rule.params, start=1):
            if p.name == name:
                return f"($1::text[])[{position}]::{p.type}"
        declared = ", ".join(p.name for p in rule.params) or "none"
        raise RenderError(f"{rule.slug}: unknown param {name!r} (declared: {declared})")

    def unfinished(column: str) -> str:
        # For users a rule finds through `batch`: only an award (no progress) may leave out
        # a done user; the progress of the other kinds must be read to stay exact.
        if not skip_done or rule.kind in CARRIES_PROGRESS_KINDS:
            return "TRUE"
        return f"NOT {done(rule, schema, column)}"

    def affected(column: str) -> str:
        if mode == "backfill":
            return "TRUE"
        users = _batch_users(rule)
        if skip_done:
            # done users: an award's are left out; the others' progress is carried forward
            users += f" AND NOT {done(rule, schema, 'plaudit_b.user_id')}"
        return f"{column} IN ({users})"

    def sql_filter(column: str, name: str) -> str:
        value = placeholder(name)
        return f"({value} IS NULL OR {column} = {value})"

    def badge(slug: str) -> str:
        # composite rules: another badge's grants (the runner orders rules by these references)
        if not isinstance(slug, str) or NAME_PATTERN.fullmatch(slug) is None:
            raise RenderError(f"{rule.slug}: badge() takes a badge slug, not {slug!r}")
        return (
            "(SELECT ub.user_id, ub.badge, ub.level, l.position AS level_position, l.points, "
            "ub.scope, ub.achieved_at, ub.value, ub.meta, ub.source "
            f"FROM {schema}.user_badge AS ub JOIN {schema}.badge_level AS l "
            f"ON l.badge = ub.badge AND l.key = ub.level WHERE ub.badge = {sql_string(slug)})"
        )

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
    if mode != "incremental" or rule.kind not in SKIPS_DONE_KINDS:
        return False
    if rule.kind in CARRIES_PROGRESS_KINDS and "batch" in _template_names(rule):
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
        query = template.render(template_context(rule, mode, schema)).strip().rstrip(";")
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
    if rule.kind not in KIND_COLUMNS:
        raise RenderError(
            f"{rule.location()}: {rule.slug}: kind {rule.kind!r} is not implemented yet"
        )
    required, optional = KIND_COLUMNS[rule.kind]
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
    macro = getattr(environment().get_template(f"kinds/{rule.kind}.sql").module, rule.kind)
    arguments = _macro_arguments(rule, has, config.timezone if config else "UTC")
    schema = config.schema if config else "plaudit"
    if mode == "incremental":

        def held(user: str, level: str, scope: str) -> str:
            return held_level(rule, schema, user, level, scope)

        if rule.kind == "count":
            arguments["held"] = held
        if rule.kind == "streak" and not has["scope"]:
            arguments["window"] = _streak_window(rule, schema, held)
        if rule.kind in CARRIES_PROGRESS_KINDS and _skips_done(rule, mode, schema):
            arguments["carry"] = _carry(rule, schema)
    sql = str(macro(query, **arguments)).strip()
    if mode == "incremental" and rule.kind != "award" and "batch" not in _template_names(rule):
        sql = _clearing(rule, sql)
    return Rendered(rule=rule, mode=mode, query=query, sql=sql)


def _clearing(rule: Rule, sql: str) -> str:
    """An incremental run re-reads the batch's users (affected()): a progress row of theirs
    that the result does not hold (its source rows were deleted, or the grants a composite
    read were revoked; a scope of theirs that vanished) goes, as a complete backfill removes
    it. Each such user gets a marker row (a progress row whose value and scope are NULL);
    run_rule deletes their progress rows that the result has no row for."""
    return (
        f"WITH plaudit_rows AS MATERIALIZED (\n{sql}\n)\n"
        "SELECT * FROM plaudit_rows\n"
        "UNION ALL\n"
        "SELECT DISTINCT plaudit_b.user_id, NULL::text, NULL::text, NULL::timestamptz, "
        "NULL::numeric, NULL::jsonb, true\n"
        f"FROM {BATCH_TABLE} AS plaudit_b\n"
        f"WHERE {_for_rule(rule, 'plaudit_b')}"
    )


def _carry(rule: Rule, schema: str) -> dict[str, str]:
    """What count, sum and gauge need to carry a done user's progress forward in an
    incremental run (affected() leaves such users out of `query`): their progress rows, and
    the rule's query for every batch user, read by the macro only after `through_at`."""
    text = environment().from_string(rule.query).render(
        template_context(rule, "incremental", schema, False)
    )
    # from the batch's users to their progress row by key (not the badge's rows, scanned)
    progress = (
        f"(SELECT plaudit_p.user_id, plaudit_p.value, plaudit_p.through_at "
        f"FROM (SELECT DISTINCT plaudit_b.user_id FROM {BATCH_TABLE} AS plaudit_b "
        f"WHERE {_for_rule(rule, 'plaudit_b')} AND {done(rule, schema, 'plaudit_b.user_id')}) "
        f"AS plaudit_u "
        f"JOIN LATERAL (SELECT plaudit_p.user_id, plaudit_p.value, plaudit_p.through_at "
        f"FROM {schema}.user_progress AS plaudit_p "
        f"WHERE plaudit_p.user_id = plaudit_u.user_id "
        f"AND plaudit_p.badge = {sql_string(rule.slug)} AND plaudit_p.scope = '') "
        f"AS plaudit_p ON true)"
    )
    return {"query": text.strip().rstrip(";"), "progress": progress}


def _streak_window(
    rule: Rule, schema: str, held: Callable[[str, str, str], str]
) -> dict[str, Any] | None:
    """What the streak kind needs to read users from their last active period in
    incremental runs (sql/kinds/streak.sql): only when the rule's users come from
    affected(), so that the batch's users are the users to re-check."""
    if "batch" in _template_names(rule):
        return None
    return {
        "batch": str(_Batch(rule, "incremental")),
        "schema": schema,
        "badge": sql_string(rule.slug),
        "batch_start": batch_start(rule),
        "held": held,
        "trusted": trusted(rule, schema),
    }


def _macro_arguments(rule: Rule, has: Mapping[str, bool], timezone: str) -> dict[str, Any]:
    """The kind macro's arguments besides the query: levels, optional columns, calendar."""
    if rule.kind == "award":
        if len(rule.levels) > 1 and not has["level"]:
            raise RenderError(
                f"{rule.location()}: {rule.slug}: an award with several levels "
                "must return a level column"
            )
        return {
            "default_level": rule.levels[0].key,
            "has_level": has["level"],
            "has_scope": has["scope"],
            "has_meta": has["meta"],
        }
    if rule.kind in WHOLE_THRESHOLDS:
        for level in rule.levels:
            if level.threshold is None or level.threshold != int(level.threshold):
                raise RenderError(
                    f"{rule.file or rule.path.as_posix()}:{level.line}: {rule.slug}: "
                    f"{rule.kind} thresholds must be whole numbers"
                )
    arguments: dict[str, Any] = {"levels": rule.levels, "has_scope": has["scope"]}
    if rule.kind in DEFAULT_PERIODS:
        arguments["period"] = rule.period or DEFAULT_PERIODS[rule.kind]
        arguments["timezone"] = rule.timezone or timezone
    if rule.kind == "growth":
        arguments["has_amount"] = has["amount"]
    return arguments


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
