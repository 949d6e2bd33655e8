"""plaudit.yaml at the project root, and the value formats it shares with rule files.

The file is optional: without it, every default holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plaudit.errors import ConfigError
from plaudit.model.denylist import denied_reason, plaudit_functions
from plaudit.model.face import Category, read_categories
from plaudit.model.issuer import OpenBadges, read_openbadges
from plaudit.model.modes import Mode
from plaudit.model.webhooks import Webhooks, read_webhooks
from plaudit.model.yamlsource import Fields, LocatedDict, describe, is_str, load_yaml_file

CONFIG_FILE = "plaudit.yaml"
DATABASE_KEYS = ("schema", "user_id_type", "timezone", "statement_timeout", "backfill_timeout")
CONFIG_KEYS = (
    "rules", *DATABASE_KEYS, "notify", "events", "retention", "allow_functions", "categories",
    "groups", "openbadges", "quiet_days", "webhooks",
)
NOTIFY_KEYS = ("channel", "max_age")
RETENTION_KEYS = ("runs", "job_runs", "outbox")
EVENT_KEYS = ("table", "on", "user", "at")
USER_ID_TYPES = ("bigint", "integer", "text", "uuid")
EVENT_OPERATIONS = ("insert", "update", "delete")

# Slugs, level keys and event types.
NAME_PATTERN = re.compile(r"[a-z0-9_]+")
# SQL identifiers that need no quoting: param names, schema, columns, notify channel.
IDENTIFIER_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
# A table, optionally schema-qualified; unquoted identifiers only.
TABLE_PATTERN = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
# A statement_timeout; a bare number means milliseconds, as it does in PostgreSQL.
DURATION_PATTERN = re.compile(r"(\d+)\s*(ms|s|min|h)?")
DURATION_REQUIREMENT = "must be a duration like 30s, 500ms, 5min or 1h"
# A timeout of 0 disables PostgreSQL's statement_timeout, and a year is as good as none: a
# rule that runs longer than a day is stuck, and it holds its events and its lock meanwhile.
MAX_TIMEOUT_MS = 24 * 3600 * 1000
TIMEOUT_RANGE = "must be more than 0 and at most 24h"
_MILLISECONDS = {None: 1, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
# A PostgreSQL interval such as "2 days" or "1 day 12 hours", for notify.max_age.
_UNIT = r"(ms|milliseconds?|s|secs?|seconds?|min|mins|minutes?|h|hours?|days?|weeks?)"
INTERVAL_PATTERN = re.compile(rf"(\d+\s*{_UNIT}\s*)+")

# Rules gone quiet: `plaudit status` and `plaudit stats` look back this many days by default.
DEFAULT_QUIET_DAYS = 7

# The defaults of the settings the database also uses when a caller gives none (pg_cron
# jobs, plaudit.award_badge, run_rule before `deploy` has synced plaudit.yaml): written
# once, here. The schema files read them as {{ defaults.<name> }} (runtime.db.render_sql).
DEFAULTS: Mapping[str, str] = MappingProxyType({
    "statement_timeout": "60s",
    # a backfill reads all history: at 1M users two bundled rules take a minute (BENCHMARKS.md)
    "backfill_timeout": "30min",
    "notify_channel": "plaudit_award",
    "notify_max_age": "2 days",
    # how long scheduled jobs keep plaudit.run rows and their cron.job_run_details rows
    "retention_runs": "30 days",
    "retention_job_runs": "7 days",
    # how long the outbox keeps what every webhook has delivered (sql/schema/012_outbox.sql)
    "retention_outbox": "7 days",
})


@dataclass(frozen=True)
class EventSource:
    """An app table whose rows become events through a trigger, with no app code."""

    name: str  # the event type, as named in rules' triggers
    table: str
    on: str  # insert | update | delete
    user: str  # column holding the user id
    at: str | None  # column holding the time; None means the time of the change


@dataclass(frozen=True)
class Group:
    """A leaderboard group (friends, a classroom, a team): a SELECT returning (group_id,
    user_id), written like a rule and run under the same boundary."""

    name: str
    query: str
    line: int  # plaudit.yaml line of the query


@dataclass(frozen=True)
class Config:
    project_dir: Path
    rules_dir: Path
    schema: str = "plaudit"
    user_id_type: str = "bigint"
    timezone: str = "UTC"
    statement_timeout: str = DEFAULTS["statement_timeout"]
    backfill_timeout: str = DEFAULTS["backfill_timeout"]
    notify_channel: str = DEFAULTS["notify_channel"]
    notify_max_age: str = DEFAULTS["notify_max_age"]
    events: tuple[EventSource, ...] = ()
    retention_runs: str = DEFAULTS["retention_runs"]
    retention_job_runs: str = DEFAULTS["retention_job_runs"]
    retention_outbox: str = DEFAULTS["retention_outbox"]
    # functions of the deny list (plaudit.denylist) that this site's rules may call anyway
    allow_functions: tuple[str, ...] = ()
    # the trophy case's sections, in order (model/face.py); none: rules may name any category
    categories: tuple[Category, ...] = ()
    groups: tuple[Group, ...] = ()
    # the issuer of exported Open Badges 3.0 credentials (model/issuer.py); None: not set up
    openbadges: OpenBadges | None = None
    # a rule granting nothing this many days while its events keep coming needs attention
    # (`plaudit status`); 0: never
    quiet_days: int = DEFAULT_QUIET_DAYS
    # where `plaudit deliver` posts the outbox (model/webhooks.py); None: no webhooks
    webhooks: Webhooks | None = None
    # the schema is placed on a Citus cluster (`init --citus`): not from plaudit.yaml, the
    # engine finds it in the database; the kinds render SQL Citus can run (docs/citus.md)
    citus: bool = False

    def timeout(self, mode: Mode) -> str:
        """The default timeout of a rule run in `mode` (a rule's own `timeout:` wins)."""
        return self.backfill_timeout if mode == "backfill" else self.statement_timeout


def is_name(value: Any) -> bool:
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def is_identifier(value: Any) -> bool:
    return isinstance(value, str) and IDENTIFIER_PATTERN.fullmatch(value) is not None


def is_duration(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    return DURATION_PATTERN.fullmatch(str(value).strip()) is not None


def is_timezone(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def read_timezone(fields: Fields, mapping: LocatedDict, default: str | None) -> str | None:
    """The IANA time zone under `timezone`, or `default` and a problem."""
    timezone: str | None = fields.field(
        mapping, "timezone", is_str, "must be a string", default=default
    )
    if timezone is not None and not is_timezone(timezone):
        fields.problem(mapping.value_line("timezone"), f"unknown timezone '{timezone}'")
        return default
    return timezone


def read_duration(
    fields: Fields, mapping: LocatedDict, key: str, default: str | None
) -> str | None:
    """A timeout, more than 0 and at most 24h; YAML reads `60` as a number, so numbers
    are accepted too."""
    duration = fields.field(mapping, key, is_duration, DURATION_REQUIREMENT, default=default)
    if duration is None:
        return duration
    if not 0 < milliseconds(duration) <= MAX_TIMEOUT_MS:
        fields.problem(mapping.value_line(key), f"'{key}' {TIMEOUT_RANGE}")
        return default
    return str(duration).strip()


def milliseconds(duration: str | int) -> int:
    """The length of a duration accepted by is_duration."""
    match = DURATION_PATTERN.fullmatch(str(duration).strip())
    assert match is not None
    return int(match[1]) * _MILLISECONDS[match[2]]


def load_config(project_dir: Path) -> Config:
    """Read <project_dir>/plaudit.yaml. Raises ConfigError listing every problem, one
    "plaudit.yaml:<line>: message" per line."""
    defaults = Config(project_dir=project_dir, rules_dir=project_dir / "rules")
    path = project_dir / CONFIG_FILE
    if not path.exists():
        return defaults
    document, yaml_problems = load_yaml_file(path, CONFIG_FILE)
    fields = Fields(CONFIG_FILE, yaml_problems)
    if document is None:  # an empty file, or a syntax error
        if fields.problems:
            raise _config_error(fields)
        return defaults
    if not isinstance(document, LocatedDict):
        fields.problem(1, f"expected a mapping at the top level, got {describe(document)}")
        raise _config_error(fields)

    fields.check_keys(document, CONFIG_KEYS)
    rules = fields.text(document, "rules", default="rules")
    schema = fields.matching(document, "schema", IDENTIFIER_PATTERN, default=defaults.schema)
    user_id_type = fields.choice(
        document, "user_id_type", USER_ID_TYPES, default=defaults.user_id_type
    )
    timezone = read_timezone(fields, document, defaults.timezone)
    timeout = read_duration(fields, document, "statement_timeout", defaults.statement_timeout)
    backfill = read_duration(fields, document, "backfill_timeout", defaults.backfill_timeout)
    channel, max_age = _notify(fields, document, defaults)
    events = _events(fields, document)
    retention = _retention(fields, document, defaults)
    allow_functions = _allow_functions(fields, document)
    categories = read_categories(fields, document)
    groups = _groups(fields, document)
    openbadges = read_openbadges(fields, document)
    quiet_days = fields.field(
        document, "quiet_days", _is_days, "must be a whole number of days (0: never)",
        default=defaults.quiet_days,
    )  # fmt: skip
    webhooks = read_webhooks(fields, document)
    if fields.problems:
        raise _config_error(fields)
    return Config(
        project_dir=project_dir,
        rules_dir=project_dir / rules,
        schema=schema,
        user_id_type=user_id_type,
        timezone=timezone or defaults.timezone,
        statement_timeout=timeout or defaults.statement_timeout,
        backfill_timeout=backfill or defaults.backfill_timeout,
        notify_channel=channel,
        notify_max_age=max_age,
        events=events,
        retention_runs=retention[0],
        retention_job_runs=retention[1],
        retention_outbox=retention[2],
        allow_functions=allow_functions,
        categories=categories,
        groups=groups,
        openbadges=openbadges,
        quiet_days=quiet_days,
        webhooks=webhooks,
    )


def _config_error(fields: Fields) -> ConfigError:
    problems = sorted(fields.problems, key=lambda p: (p.line, p.message))
    return ConfigError("\n".join(str(problem) for problem in problems))


def _is_table(value: Any) -> bool:
    return isinstance(value, str) and TABLE_PATTERN.fullmatch(value) is not None


def _is_days(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_interval(value: Any) -> bool:
    return isinstance(value, str) and INTERVAL_PATTERN.fullmatch(value.strip()) is not None


def _notify(fields: Fields, document: LocatedDict, defaults: Config) -> tuple[str, str]:
    notify = fields.field(document, "notify", lambda v: isinstance(v, dict), "must be a mapping")
    if notify is None:
        return defaults.notify_channel, defaults.notify_max_age
    fields.check_keys(notify, NOTIFY_KEYS)
    # LISTEN takes the channel as an identifier: it must be one that needs no quoting.
    channel = fields.matching(
        notify,
        "channel",
        IDENTIFIER_PATTERN,
        default=defaults.notify_channel,
        label="notify.channel",
    )
    requirement = "must be an interval like 2 days or 12 hours"
    max_age = fields.field(
        notify, "max_age", _is_interval, requirement, default=defaults.notify_max_age,
        label="notify.max_age",
    )  # fmt: skip
    return channel, max_age.strip()


def _retention(
    fields: Fields, document: LocatedDict, defaults: Config
) -> tuple[str, str, str]:
    retention = fields.field(
        document, "retention", lambda v: isinstance(v, dict), "must be a mapping"
    )
    if retention is None:
        return defaults.retention_runs, defaults.retention_job_runs, defaults.retention_outbox
    fields.check_keys(retention, RETENTION_KEYS)
    requirement = "must be an interval like 30 days or 12 hours"
    runs = fields.field(
        retention, "runs", _is_interval, requirement, default=defaults.retention_runs,
        label="retention.runs",
    )  # fmt: skip
    job_runs = fields.field(
        retention, "job_runs", _is_interval, requirement, default=defaults.retention_job_runs,
        label="retention.job_runs",
    )  # fmt: skip
    outbox = fields.field(
        retention, "outbox", _is_interval, requirement, default=defaults.retention_outbox,
        label="retention.outbox",
    )  # fmt: skip
    return runs.strip(), job_runs.strip(), outbox.strip()


def _allow_functions(fields: Fields, document: LocatedDict) -> tuple[str, ...]:
    """The reviewed exceptions to the deny list: exact names of functions on it. plaudit's
    own functions write the queue and the grants, so they can never be allowed."""
    names = fields.field(
        document, "allow_functions", lambda v: isinstance(v, list),
        "must be a list of function names",
    )  # fmt: skip
    allowed: list[str] = []
    for index, name in enumerate(names or ()):
        line = names.item_line(index)
        text = name.strip().lower() if isinstance(name, str) else None
        if text is not None and text.split(".")[-1] in plaudit_functions():
            message = f"'{name}' is one of plaudit's own functions, which can never be allowed"
        elif text is None or not is_identifier(text):
            message = f"{name!r} is not a function name like pg_sleep"
        elif denied_reason(text) is None:
            message = f"'{name}' is not on the deny list (nothing to allow)"
        else:
            allowed.append(text)
            continue
        fields.problem(line, f"allow_functions: {message}")
    return tuple(allowed)


def _events(fields: Fields, document: LocatedDict) -> tuple[EventSource, ...]:
    specs = fields.field(document, "events", lambda v: isinstance(v, dict), "must be a mapping")
    sources: list[EventSource] = []
    for name, spec in (specs or {}).items():
        if not is_name(name):
            fields.problem(specs.key_line(name), f"event type '{name}' must match [a-z0-9_]+")
            continue
        if not isinstance(spec, LocatedDict):
            message = f"event '{name}' must be a mapping like {{table: t, on: insert, user: c}}"
            fields.problem(specs.value_line(name), message)
            continue
        fields.check_keys(spec, EVENT_KEYS)
        requirement = "must be a table name like comments or app.comments"
        table = fields.field(spec, "table", _is_table, requirement, required=True)
        on = fields.choice(spec, "on", EVENT_OPERATIONS, required=True)
        user = fields.matching(spec, "user", IDENTIFIER_PATTERN, required=True)
        at = fields.matching(spec, "at", IDENTIFIER_PATTERN)
        if table is not None and on is not None and user is not None:
            sources.append(EventSource(name, table, on, user, at))
    return tuple(sources)


def _groups(fields: Fields, document: LocatedDict) -> tuple[Group, ...]:
    """`groups: {classroom: "SELECT ... AS group_id, ... AS user_id FROM ..."}`; the SQL is
    checked by plaudit.sqlgen.groups (one SELECT, no denied call) and against the database
    by deploy (the columns)."""
    specs = fields.field(
        document, "groups", lambda v: isinstance(v, dict),
        'must be a mapping of name to a SELECT, like {classroom: "SELECT ..."}',
    )  # fmt: skip
    groups: list[Group] = []
    for name, query in (specs or {}).items():
        if not is_name(name):
            fields.problem(specs.key_line(name), f"group name '{name}' must match [a-z0-9_]+")
        elif not isinstance(query, str) or not query.strip():
            message = f"group '{name}' must be a SELECT returning group_id and user_id"
            fields.problem(specs.value_line(name), message)
        else:
            groups.append(Group(name, query.strip(), specs.value_line(name)))
    return tuple(groups)
