"""Choosing rules on the command line: `--select` and `--exclude` take slugs, `tag:NAME`,
`kind:NAME`, globs (in all of them), `state:dirty` and `state:due`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from fnmatch import fnmatchcase

from plaudit.errors import ConfigError
from plaudit.model.rules import Rule

# `state:NAME` selects by what the database knows about a rule.
STATES = ("dirty", "due")


def needs_state(patterns: Iterable[str]) -> bool:
    """Whether selecting needs the rules' state from the database."""
    return any(p.startswith("state:") for p in patterns)


def matches(
    rule: Rule, pattern: str, dirty: Collection[str] = (), due: Collection[str] = ()
) -> bool:
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
    A pattern that matches nothing is an error: a typo must not silently run nothing.
    `state:dirty` is the exception: no dirty rule is good news, not a typo.
    """
    patterns, exclude = list(patterns), list(exclude)
    _check(rules, patterns, "--select")
    _check(rules, exclude, "--exclude")
    chosen = list(rules)
    if patterns:
        chosen = [r for r in rules if any(matches(r, p, dirty, due) for p in patterns)]
    return [rule for rule in chosen if not any(matches(rule, p, dirty, due) for p in exclude)]


def _check(rules: Sequence[Rule], patterns: Sequence[str], option: str) -> None:
    for pattern in patterns:
        if pattern.startswith("state:"):
            if pattern[6:] not in STATES:
                known = ", ".join(f"state:{s}" for s in STATES)
                raise ConfigError(f"{option} {pattern!r}: unknown state (known: {known})")
        elif not any(matches(rule, pattern) for rule in rules):
            raise ConfigError(f"{option} {pattern!r} matches no rule")
