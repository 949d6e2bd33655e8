"""Choosing rules on the command line: `--select` and `--exclude` take slugs, `tag:NAME`,
`kind:NAME`, globs (in all of them), `state:dirty` and `state:due`, dbt's graph operators
on the `badge()` references (`+slug`: the rule and the rules it reads, transitively;
`slug+`: the rule and the rules reading it) and intersections (`tag:a,kind:count`: the
rules matching every part)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from fnmatch import fnmatchcase

from plaudit.errors import ConfigError
from plaudit.model.dependencies import references
from plaudit.model.rules import Rule

# `state:NAME` selects by what the database knows about a rule.
STATES = ("dirty", "due")


def needs_state(patterns: Iterable[str]) -> bool:
    """Whether selecting needs the rules' state from the database."""
    return any(part.strip("+").startswith("state:") for p in patterns for part in p.split(","))


def matches(
    rule: Rule, pattern: str, dirty: Collection[str] = (), due: Collection[str] = ()
) -> bool:
    """Whether one plain selector (no graph operator, no intersection) picks `rule`."""
    if pattern.startswith("tag:"):
        return any(fnmatchcase(tag, pattern[4:]) for tag in rule.tags)
    if pattern.startswith("kind:"):
        return fnmatchcase(rule.kind, pattern[5:])
    if pattern == "state:dirty":  # a failed run left it behind; a backfill repairs it
        return rule.slug in dirty
    if pattern == "state:due":  # what the nightly job backfills (plaudit.due_rules())
        return rule.slug in due
    return fnmatchcase(rule.slug, pattern)


def select(
    rules: Sequence[Rule],
    patterns: Iterable[str] = (),
    dirty: Collection[str] = (),
    exclude: Iterable[str] = (),
    due: Collection[str] = (),
) -> list[Rule]:
    """The rules matching any pattern (all rules when none) and no `exclude` pattern, in
    the given order.

    `dirty`: the slugs the database marks dirty, for `state:dirty`; `due`: the slugs a
    nightly job would backfill, for `state:due`.
    A selector that matches nothing is an error: a typo must not silently run nothing.
    `state:` is the exception: no dirty or due rule is good news, not a typo.
    """
    patterns, exclude = list(patterns), list(exclude)
    graph = _Graph(rules)
    _check(rules, patterns, "--select")
    _check(rules, exclude, "--exclude")
    chosen: set[str] = {r.slug for r in rules}
    if patterns:
        chosen = set().union(*(_selected(graph, p, dirty, due) for p in patterns))
    excluded = set().union(set(), *(_selected(graph, p, dirty, due) for p in exclude))
    return [rule for rule in rules if rule.slug in chosen - excluded]


class _Graph:
    """The rules and their `badge()` references, both ways."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = rules
        known = {rule.slug for rule in rules}
        self.reads = {rule.slug: set(references(rule)) & known for rule in rules}
        self.read_by: dict[str, set[str]] = {slug: set() for slug in known}
        for slug, read in self.reads.items():
            for other in read:
                self.read_by[other].add(slug)

    def closure(self, start: set[str], edges: dict[str, set[str]]) -> set[str]:
        found, waiting = set(start), list(start)
        while waiting:
            for other in edges[waiting.pop()] - found:
                found.add(other)
                waiting.append(other)
        return found


def _selected(
    graph: _Graph, pattern: str, dirty: Collection[str], due: Collection[str]
) -> set[str]:
    """The slugs one selector picks: the intersection of its comma-separated parts."""
    parts = [_part(graph, part, dirty, due) for part in pattern.split(",")]
    return set.intersection(*parts)


def _part(graph: _Graph, part: str, dirty: Collection[str], due: Collection[str]) -> set[str]:
    upstream, downstream = part.startswith("+"), part.endswith("+")
    matched = {r.slug for r in graph.rules if matches(r, part.strip("+"), dirty, due)}
    found = set(matched)
    if upstream:  # +slug: and the rules it reads, transitively
        found |= graph.closure(matched, graph.reads)
    if downstream:  # slug+: and the rules reading it, transitively
        found |= graph.closure(matched, graph.read_by)
    return found


def _check(rules: Sequence[Rule], patterns: Sequence[str], option: str) -> None:
    for pattern in patterns:
        for part in pattern.split(","):
            plain = part.strip("+")
            if not plain:
                raise ConfigError(f"{option} {pattern!r}: an empty selector")
            if plain.startswith("state:"):
                if plain[6:] not in STATES:
                    known = ", ".join(f"state:{s}" for s in STATES)
                    raise ConfigError(f"{option} {pattern!r}: unknown state (known: {known})")
            elif not any(matches(rule, plain) for rule in rules):
                raise ConfigError(f"{option} {pattern!r} matches no rule")
