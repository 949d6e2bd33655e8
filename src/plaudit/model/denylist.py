"""Functions a rule's query may not call: an early warning, not the boundary.

A rule is a SELECT that reads app tables. Some functions turn a SELECT into something else:
they change the session (`set_config('role', ...)` drops a `SET ROLE`), hold locks past the
statement (`pg_advisory_lock`), reach the server and its files (`pg_terminate_backend`,
`pg_read_file`, `lo_import`), other servers (`dblink`), or run SQL of their own
(`query_to_xml`). plaudit's own functions (`plaudit.take_events`, `award_badge`, ...) write
the queue and the grants. `validate`, `deploy`, `test` and `preview` all render a rule
before anything runs, and the render refuses these calls at the rule's file:line.

This is a static check of the text, not a security boundary: a function of the app's that
calls one of these, or a name it does not know, gets through. What a rule can really do is
decided at run time by the runner role (what it is granted), which is the protection; this
list makes the usual mistakes and probes visible before a rule is deployed. A site that
really needs one of these functions lists it under `allow_functions:` in plaudit.yaml;
plaudit's own functions can never be allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from functools import cache
from typing import Any

from pglast.parser import ParseError, parse_sql_json

from plaudit.sqlfiles import schema_files

# Exact names, and families by prefix, each with why a SELECT must not call it.
_SESSION = "it changes the session or server"
_FILES = "it reads the server's files"
_SQL = "it runs SQL of its own"
DENIED: dict[str, str] = {
    "set_config": _SESSION,
    "setseed": _SESSION,
    "pg_terminate_backend": _SESSION,
    "pg_cancel_backend": _SESSION,
    "pg_notify": _SESSION,
    "nextval": _SESSION,
    "setval": _SESSION,
    "pg_reload_conf": _SESSION,
    "pg_rotate_logfile": _SESSION,
    "pg_switch_wal": _SESSION,
    "pg_promote": _SESSION,
    "pg_drop_replication_slot": _SESSION,
    "pg_replication_slot_advance": _SESSION,
    "pg_log_backend_memory_contexts": _SESSION,
    "pg_import_system_collations": _SESSION,
    "loread": _FILES,
    "lowrite": _SESSION,
    "pg_stat_file": _FILES,
    "ts_stat": _SQL,
    "ts_rewrite": _SQL,
    "cursor_to_xml": _SQL,
    "cursor_to_xmlschema": _SQL,
}
DENIED_PREFIXES: dict[str, str] = {
    "pg_advisory_": _SESSION,
    "pg_try_advisory_": _SESSION,
    "pg_sleep": _SESSION,
    "pg_create_": _SESSION,
    "pg_copy_": _SESSION,
    "pg_logical_": _SESSION,
    "pg_replication_origin_": _SESSION,
    "pg_wal_replay_": _SESSION,
    "pg_backup_": _SESSION,
    "pg_start_backup": _SESSION,
    "pg_stop_backup": _SESSION,
    "pg_stat_reset": _SESSION,
    "dblink": "it connects to other servers",
    "lo_": "it reads or writes large objects and the server's files",
    "pg_read_": _FILES,
    "pg_ls_": _FILES,
    "pg_file_": _FILES,
    "query_to_xml": _SQL,
    "table_to_xml": _SQL,
    "schema_to_xml": _SQL,
    "database_to_xml": _SQL,
}
PLAUDIT_REASON = "it is one of plaudit's own functions, which no rule may call"
UNQUALIFIED_HINT = " (if it is the app's own, qualify it with its schema)"
SEE = " (see docs on the rule boundary)"
_DEFINED = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\s+\{\{\s*schema\s*\}\}\.(\w+)",
    re.IGNORECASE,
)


def denied_reason(name: str) -> str | None:
    """Why the deny list refuses the function `name` (unqualified), or None."""
    name = name.lower()
    if name in DENIED:
        return DENIED[name]
    for prefix, reason in DENIED_PREFIXES.items():
        if name.startswith(prefix):
            return reason
    return None


@cache
def plaudit_functions() -> frozenset[str]:
    """The names of plaudit's functions and procedures, read from its schema files."""
    names: set[str] = set()
    for path in schema_files():
        names.update(match.lower() for match in _DEFINED.findall(path.read_text()))
    return frozenset(names)


def forbidden_calls(
    query: str, schema: str = "plaudit", allowed: Collection[str] = ()
) -> Iterator[tuple[int, str]]:
    """The calls in `query` a rule may not make: (character offset in `query`, message).
    Nothing when the query does not parse (the SELECT check reports that)."""
    try:
        tree = json.loads(parse_sql_json(query))
    except ParseError:
        return
    encoded = query.encode()
    allow = {name.lower() for name in allowed}
    for call in _calls(tree):
        names = [part["String"]["sval"] for part in call.get("funcname", []) if "String" in part]
        if not names:
            continue
        name = names[-1].lower()
        qualifier = names[-2].lower() if len(names) > 1 else None
        # byte offsets from the parser; messages need lines of the text
        offset = len(encoded[: call.get("location", 0)].decode("utf-8", "ignore"))
        if qualifier == schema.lower():
            yield offset, _message(f"{schema}.{name}", PLAUDIT_REASON)
        elif qualifier is None and name in plaudit_functions():
            yield offset, _message(name, PLAUDIT_REASON + UNQUALIFIED_HINT)
        elif name not in allow:
            # whatever the schema: extensions such as dblink install into public
            reason = denied_reason(name)
            if reason is not None:
                yield offset, _message(name, reason)


def _message(name: str, reason: str) -> str:
    return f"function {name}() is not allowed in a rule query: {reason}{SEE}"


def _calls(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "FuncCall":
                yield value
            yield from _calls(value)
    elif isinstance(node, list):
        for item in node:
            yield from _calls(item)
