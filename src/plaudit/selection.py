"""Choosing rules on the command line: `--select` slugs, `tag:NAME` and globs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from .errors import ConfigError
from .rules import Rule


def matches(rule: Rule, pattern: str) -> bool:
    if pattern.startswith("tag:"):
        return any(fnmatchcase(tag, pattern[4:]) for tag in rule.tags)
    return fnmatchcase(rule.slug, pattern)


def select(rules: Sequence[Rule], patterns: Iterable[str] = ()) -> list[Rule]:
    """The rules matching any pattern (all rules when none), in the given order.

    A pattern that matches nothing is an error: a typo must not silently run nothing.
    """
    patterns = list(patterns)
    if not patterns:
        return list(rules)
    for pattern in patterns:
        if not any(matches(rule, pattern) for rule in rules):
            raise ConfigError(f"--select {pattern!r} matches no rule")
    return [rule for rule in rules if any(matches(rule, p) for p in patterns)]
