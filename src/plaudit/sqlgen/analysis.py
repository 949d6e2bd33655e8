"""What a query reads, from its parse tree (pglast)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pglast.parser import ParseError, parse_sql_json


def relations(query: str) -> Iterator[tuple[str | None, str]]:
    """The tables a query reads (schema or None, name), common table expressions aside."""
    try:
        tree = json.loads(parse_sql_json(query))
    except ParseError:
        return
    ctes = {n["ctename"] for n in _nodes(tree, "CommonTableExpr")}
    for node in _nodes(tree, "RangeVar"):
        schema = node.get("schemaname")
        if schema is None and node["relname"] in ctes:
            continue
        yield schema, node["relname"]


def _nodes(tree: Any, kind: str) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == kind:
                yield value
            yield from _nodes(value, kind)
    elif isinstance(tree, list):
        for item in tree:
            yield from _nodes(item, kind)
