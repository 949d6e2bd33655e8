"""The rule model, and loading and validating rule files (rules/<slug>.yaml).

Every problem of every file is collected and raised as one RuleError, so an analyst fixes
a rule set in one pass instead of one error per run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from plaudit.errors import ConfigError, Problem, RuleError
from plaudit.model.config import (
    IDENTIFIER_PATTERN,
    NAME_PATTERN,
    is_name,
    read_duration,
    read_timezone,
)
from plaudit.model.face import Translation, read_i18n
from plaudit.model.kinds import KINDS, KindName
from plaudit.model.yamlsource import Fields, LocatedDict, describe, is_str, is_text, load_yaml_file

PARAM_TYPES = ("bigint", "integer", "numeric", "text", "boolean", "date", "timestamptz", "uuid")
PERIODS = ("day", "week", "month")
# The keys of a rule file: what the badge is, and how its query runs.
BADGE_KEYS = ("slug", "name", "description", "kind", "levels", "tags", "enabled")
# How the badge shows in a trophy case (model/face.py): none of it changes what earns it.
FACE_KEYS = ("category", "secret", "order", "i18n")
QUERY_KEYS = ("query", "params", "triggers", "period", "timezone", "revoke", "timeout")
# `tests:` holds the rule's test cases, read by plaudit.testcases (not part of the badge).
RULE_KEYS = BADGE_KEYS + FACE_KEYS + QUERY_KEYS + ("tests",)
# Rule files: <slug>.yaml or <slug>.yml; their test cases: <slug>.test.yaml or .test.yml.
RULE_SUFFIXES = (".yaml", ".yml")
LEVEL_KEYS = ("key", "name", "threshold", "points", "icon", "description", "hint")
PARAM_KEYS = ("type",)


@dataclass(frozen=True)
class Level:
    key: str
    name: str
    threshold: int | Decimal | None
    points: int
    icon: str | None
    line: int
    description: str | None = None  # what the holder did
    hint: str | None = None  # how to earn it, shown while it is the next level


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    line: int


@dataclass(frozen=True)
class Rule:
    slug: str
    name: str
    description: str
    kind: KindName
    triggers: tuple[str, ...]
    tags: tuple[str, ...]
    enabled: bool
    params: tuple[Param, ...]
    levels: tuple[Level, ...]
    query: str
    query_line: int  # file line of the query's first line
    path: Path
    period: str | None
    timezone: str | None
    revoke: bool
    timeout: str | None
    line: int = 1
    file: str = ""  # display name used in messages ("rules/x.yaml"); defaults to path
    triggers_line: int = 1  # file line of `triggers:` (the rule's first line without one)
    # the face (model/face.py): a trophy case's section, listed only once earned, the place
    # in its section (None: after those with one), the texts in other languages
    category: str | None = None
    secret: bool = False
    order: int | None = None
    i18n: tuple[Translation, ...] = ()
    category_line: int = 1

    def location(self, query_offset: int = 0) -> str:
        """The "rules/x.yaml:<line>" of the 0-based line `query_offset` inside the query."""
        return f"{self.file or self.path.as_posix()}:{self.query_line + query_offset}"


def _is_positive(value: Any) -> bool:
    # bool is an int in Python, but `threshold: true` is a mistake, not the number 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0


def _is_points(value: Any) -> bool:
    return _is_integer(value) and value >= 0


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_rule(path: Path, root: Path | None = None) -> Rule:
    """Load one rule file; messages name it relative to `root` (default: the parent of its
    directory, so rules/x.yaml). Raises RuleError with all problems of the file."""
    parsed = _parse(path, _display(path, path.parent.parent if root is None else root))
    if parsed.rule is None:
        raise RuleError(parsed.problems)
    return parsed.rule


def load_rules(directory: Path, root: Path | None = None) -> list[Rule]:
    """Load every <directory>/*.yaml (and *.yml) except *.test.yaml, sorted by slug. Raises
    one RuleError carrying the problems of all files, duplicate slugs included, and a
    ConfigError when the directory does not exist."""
    rules, problems = read_rules(directory, root)
    if problems:
        raise RuleError(problems)
    return rules


def read_rules(directory: Path, root: Path | None = None) -> tuple[list[Rule], list[Problem]]:
    """The valid rules of <directory> (sorted by slug) and the problems of the others, for
    checks that carry on past an invalid file (`plaudit validate`)."""
    root = directory.parent if root is None else root
    # A missing folder (a typo in `rules:`) is not an empty rule set: deploy would then
    # offer to remove every badge.
    name = _display(directory, root)
    if not directory.exists():
        raise ConfigError(
            f"the rules folder {name}/ does not exist (plaudit.yaml's `rules:` names it; "
            "the default is rules/)"
        )
    if not directory.is_dir():
        raise ConfigError(f"the rules folder {name} is a file, not a folder")
    paths = sorted(
        path
        for path in directory.iterdir()
        # Dot files are editor leftovers (.#x.yaml); tests live beside rules as x.test.yaml.
        if path.suffix in RULE_SUFFIXES
        and not path.name.startswith(".")
        and not path.stem.endswith(".test")
    )
    rules: list[Rule] = []
    problems: list[Problem] = []
    slug_files: dict[str, str] = {}
    for path in paths:
        parsed = _parse(path, _display(path, root))
        problems += parsed.problems
        if parsed.slug is not None:
            first = slug_files.setdefault(parsed.slug, parsed.file)
            if first != parsed.file:
                message = f"duplicate slug '{parsed.slug}' (also in {first})"
                problems.append(Problem(parsed.file, parsed.slug_line, message))
        if parsed.rule is not None:
            rules.append(parsed.rule)
    return sorted(rules, key=lambda rule: rule.slug), problems


def _display(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


@dataclass
class _Parsed:
    file: str
    problems: list[Problem]
    rule: Rule | None = None
    slug: str | None = None  # kept even when the rule is invalid, to find duplicates
    slug_line: int = 1


def _parse(path: Path, file: str) -> _Parsed:
    document, yaml_problems = load_yaml_file(path, file)
    fields = Fields(file, yaml_problems)
    parsed = _Parsed(file, fields.problems)
    if document is None:
        if not fields.problems:
            fields.problem(1, "file is empty")
        return parsed
    if not isinstance(document, LocatedDict):
        fields.problem(1, f"expected a mapping at the top level, got {describe(document)}")
        return parsed

    fields.check_keys(document, RULE_KEYS)
    slug = fields.matching(document, "slug", NAME_PATTERN, required=True)
    if slug is not None:
        parsed.slug, parsed.slug_line = slug, document.value_line("slug")
        if path.name not in (slug + suffix for suffix in RULE_SUFFIXES):
            message = f"slug '{slug}' does not match file name '{path.name}'"
            fields.problem(parsed.slug_line, message)
    name = fields.text(document, "name", required=True)
    kind = fields.text(document, "kind", required=True)
    if kind is not None and kind not in KINDS:
        message = f"unknown kind '{kind}' (expected one of {', '.join(KINDS)})"
        fields.problem(document.value_line("kind"), message)
        kind = None
    levels = _levels(fields, document, kind, name)
    params = _params(fields, document)
    query = fields.text(document, "query", required=True)
    triggers = _list(fields, document, "triggers", is_name, "trigger '{}' must match [a-z0-9_]+")
    tags = _list(fields, document, "tags", is_text, "tag '{}' must be a non-empty string")
    description = fields.field(document, "description", is_str, "must be a string", default="")
    enabled = fields.boolean(document, "enabled", default=True)
    revoke = fields.boolean(document, "revoke", default=False)
    period = fields.choice(document, "period", PERIODS)
    timezone = read_timezone(fields, document, default=None)
    timeout = read_duration(fields, document, "timeout", default=None)
    category = fields.matching(document, "category", NAME_PATTERN)
    secret = fields.boolean(document, "secret", default=False)
    order = fields.field(document, "order", _is_integer, "must be an integer")
    i18n = read_i18n(fields, document, [level.key for level in levels])

    if fields.problems:
        return parsed
    parsed.rule = Rule(
        slug,
        name,
        description,
        kind,
        triggers,
        tags,
        enabled,
        params,
        levels,
        query,
        query_line=document.value_line("query"),
        path=path,
        period=period,
        timezone=timezone,
        revoke=revoke,
        timeout=timeout,
        file=file,
        triggers_line=document.key_line("triggers"),
        category=category,
        secret=secret,
        order=order,
        i18n=i18n,
        category_line=document.value_line("category"),
    )
    return parsed


def _list(
    fields: Fields, mapping: LocatedDict, key: str, accept: Callable[[Any], bool], message: str
) -> tuple[str, ...]:
    """The items of the list under `key`; each rejected item is a problem `message`."""
    items = fields.field(mapping, key, lambda v: isinstance(v, list), "must be a list")
    result = []
    for index, item in enumerate(items or ()):
        if accept(item):
            result.append(item)
        else:
            fields.problem(items.item_line(index), message.format(item))
    return tuple(result)


def _levels(
    fields: Fields, document: LocatedDict, kind: str | None, name: str | None
) -> tuple[Level, ...]:
    # levels reached by a value need a threshold each, increasing (model/kinds.py)
    needs_threshold = kind is not None and KINDS[kind].threshold != "none"
    items = fields.field(
        document,
        "levels",
        lambda v: isinstance(v, list) and len(v) > 0,
        "must be a non-empty list",
        required=needs_threshold,
    )
    if items is None:
        # An award (no thresholds) without levels is a one-off badge: a single level named
        # after it.
        if kind is not None and not needs_threshold:
            return (Level("default", name or "", None, 0, None, document.line),)
        return ()
    levels: list[Level] = []
    key_lines: dict[str, int] = {}
    previous: int | Decimal | None = None
    for index, item in enumerate(items):
        if not isinstance(item, LocatedDict):
            message = f"a level must be a mapping, not {describe(item)}"
            fields.problem(items.item_line(index), message)
            continue
        fields.check_keys(item, LEVEL_KEYS)
        key = fields.matching(item, "key", NAME_PATTERN, required=True)
        if key in key_lines:
            message = f"duplicate level key '{key}' (first at line {key_lines[key]})"
            fields.problem(item.value_line("key"), message)
        elif key is not None:
            key_lines[key] = item.value_line("key")
        level_name = fields.text(item, "name", required=True)
        requirement = "must be a positive number"
        raw = fields.field(item, "threshold", _is_positive, requirement, required=needs_threshold)
        # YAML floats become Decimal so that 0.1 stays 0.1 on its way into SQL.
        threshold = Decimal(str(raw)) if isinstance(raw, float) else raw
        # Award levels are picked by the query, not reached by a value: a threshold there
        # is accepted as a plain number and its order does not matter.
        if needs_threshold:
            if threshold is not None and previous is not None and threshold <= previous:
                message = f"threshold {threshold} does not increase on the previous level's "
                fields.problem(item.value_line("threshold"), message + str(previous))
            previous = threshold
        requirement = "must be a non-negative integer"
        points = fields.field(item, "points", _is_points, requirement, default=0)
        icon = fields.field(item, "icon", is_str, "must be a string")
        description, hint = (fields.text(item, text) for text in ("description", "hint"))
        if key is not None and level_name is not None:
            levels.append(
                Level(key, level_name, threshold, points, icon, item.line, description, hint))
    return tuple(levels)


def _params(fields: Fields, document: LocatedDict) -> tuple[Param, ...]:
    specs = fields.field(
        document, "params", lambda v: isinstance(v, dict), "must be a mapping of name to {type: T}"
    )
    params: list[Param] = []
    for name, spec in (specs or {}).items():
        line = specs.key_line(name)
        if IDENTIFIER_PATTERN.fullmatch(name) is None:
            message = f"param name '{name}' must match {IDENTIFIER_PATTERN.pattern}"
            fields.problem(line, message)
            continue
        if not isinstance(spec, LocatedDict):
            message = f"param '{name}' must be a mapping like {{type: bigint}}"
            fields.problem(specs.value_line(name), message)
            continue
        fields.check_keys(spec, PARAM_KEYS)
        if "type" not in spec:
            fields.problem(spec.line, "missing required key 'type'")
        elif spec["type"] not in PARAM_TYPES:
            message = f"param '{name}' has unknown type '{spec['type']}' "
            expected = f"(expected one of {', '.join(PARAM_TYPES)})"
            fields.problem(spec.value_line("type"), message + expected)
        else:
            params.append(Param(name, spec["type"], line))
    return tuple(params)
