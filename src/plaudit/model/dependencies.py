"""Composite rules: which rules read other badges' grants, and the cycles they must not form.

A rule's query may read another badge's grants through `badge('slug')`. The references are
found statically in the Jinja syntax tree (like dbt's `ref()`), so they are known offline
and without rendering: the slug must be a literal. A cycle is a validation error naming the
rules in it. Deploy records the references (definition.depends_on); the one order rules run
in is the database's (`plaudit.badge_run_order`, read by Engine.run_order).

Grants are events for the rules that read them: a rule reading badge('x') is triggered by
`badge:x` events besides its own triggers (`event_types()`), which a run of `x` adds to the
batch for each grant it makes or moves, and `plaudit award`/`revoke` for each grant they
add or remove. The database runs a batch's rules in the order of its `badge_run_order`
view, each rule when its turn comes if the batch triggers it by then (`plaudit.run_batch`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jinja2
from jinja2 import nodes

from plaudit.errors import Problem, RuleError
from plaudit.model.config import NAME_PATTERN
from plaudit.model.rules import Rule

_FUNCTION = "badge"


# The event type of a grant of badge `slug` (app event types match [a-z0-9_]+, so they
# cannot collide with it).
GRANT_EVENT = "badge:{}"


def event_types(rule: Rule) -> tuple[str, ...]:
    """The event types that trigger `rule`: its triggers, then a `badge:<slug>` for each
    badge whose grants it reads."""
    return rule.triggers + tuple(GRANT_EVENT.format(slug) for slug in sorted(references(rule)))


def references(rule: Rule) -> dict[str, int]:
    """The badges `rule` reads, {slug: file line of the first reference}. A template that does
    not parse has none here (rendering reports its syntax error)."""
    found, _ = _scan(rule)
    return found


def _scan(rule: Rule) -> tuple[dict[str, int], list[Problem]]:
    try:
        tree = jinja2.Environment().parse(rule.query)
    except jinja2.TemplateSyntaxError:
        return {}, []
    found: dict[str, int] = {}
    problems: list[Problem] = []
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == _FUNCTION):
            continue
        line = rule.query_line + call.lineno - 1
        args = call.args
        if (
            len(args) != 1
            or call.kwargs
            or not isinstance(args[0], nodes.Const)
            or not isinstance(args[0].value, str)
            or NAME_PATTERN.fullmatch(args[0].value) is None
        ):
            message = f"{rule.slug}: badge() takes one literal slug, like badge('commentator')"
            problems.append(Problem(rule.file or rule.path.as_posix(), line, message))
            continue
        found.setdefault(args[0].value, line)
    return found, problems


def check(rules: Sequence[Rule]) -> None:
    """Validate the references of a whole rule set: literal slugs, known badges, no cycles.
    Raises one RuleError with every problem, each at the file:line of the reference."""
    by_slug = {rule.slug: rule for rule in rules}
    problems: list[Problem] = []
    for rule in rules:
        found, bad = _scan(rule)
        problems += bad
        file = rule.file or rule.path.as_posix()
        for slug, line in found.items():
            if slug not in by_slug:
                message = f"{rule.slug}: badge('{slug}') references no rule in the rule set"
                problems.append(Problem(file, line, message))
    problems += _cycle_problems(rules)
    if problems:
        raise RuleError(problems)


def _cycle_problems(rules: Sequence[Rule]) -> list[Problem]:
    """One problem per rule on a cycle, naming the whole cycle, at its reference's line."""
    by_slug = {rule.slug: rule for rule in rules}
    edges = {rule.slug: [s for s in references(rule) if s in by_slug] for rule in rules}
    problems: list[Problem] = []
    reported: set[str] = set()
    for start in sorted(edges):
        if start in reported:
            continue
        cycle = _cycle_from(start, edges)
        if cycle is None or cycle[0] != start:
            continue
        path = " -> ".join([*cycle, cycle[0]])
        for index, slug in enumerate(cycle):
            rule = by_slug[slug]
            line = references(rule)[cycle[(index + 1) % len(cycle)]]
            message = f"{slug}: dependency cycle: {path}"
            problems.append(Problem(rule.file or rule.path.as_posix(), line, message))
            reported.add(slug)
    return problems


def _cycle_from(start: str, edges: dict[str, list[str]]) -> list[str] | None:
    """The shortest cycle through `start` (breadth-first), or None."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for successor in edges[node]:
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return path[::-1]
                if successor not in parents:
                    parents[successor] = node
                    following.append(successor)
        frontier = following
    return None
