"""Leaderboard groups (plaudit.yaml `groups:`), checked like rule queries before they reach
the database: one plain SELECT, no call a rule may not make, each problem at plaudit.yaml's
line. Deploy then checks the columns against the database (runtime.contract.check_groups)."""

from __future__ import annotations

import json

from pglast.parser import ParseError, parse_sql_json

from plaudit.errors import Problem
from plaudit.model.config import CONFIG_FILE, Config, Group
from plaudit.model.denylist import forbidden_calls
from plaudit.sqlgen.render import plain_select_problem

# what a group's SELECT returns, by name: the group's key and one member
GROUP_COLUMNS = ("group_id", "user_id")


def group_problems(config: Config) -> list[Problem]:
    """The problems of every group's SQL, offline."""
    return [problem for group in config.groups for problem in _problems(group, config)]


def _problems(group: Group, config: Config) -> list[Problem]:
    def at(offset: int, message: str) -> Problem:
        line = group.line + group.query.count("\n", 0, offset)
        return Problem(CONFIG_FILE, line, f"group '{group.name}': {message}")

    try:
        tree = json.loads(parse_sql_json(group.query))
    except ParseError as exc:
        message, offset = exc.args
        return [at(offset, f"SQL syntax error: {message}")]
    problem = plain_select_problem(tree)
    if problem:
        return [at(0, f"query {problem}")]
    return [
        at(offset, message)
        for offset, message in forbidden_calls(group.query, config.schema, config.allow_functions)
    ]


def members_sql(group: Group) -> str:
    """The group's SELECT as deploy describes it: the columns it must return, by name."""
    return f"SELECT g.group_id, g.user_id FROM ({group.query}\n) AS g"
