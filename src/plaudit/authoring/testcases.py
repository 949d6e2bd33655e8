"""Rule test cases as data: reading them from rule files and <slug>.test.yaml files.

A rule file may carry `tests:`, or a `<slug>.test.yaml` beside it a `tests:` of its own:

    tests:
      tenth_comment_earns_bronze:            # the case's name: [a-z0-9_]+
        given:                               # rows of the app tables the query reads
          comments:                          # a list of rows, or a SELECT giving them
            - {author_id: 1, created_at: 2024-01-01 10:00}
        events:                              # optional: the batch in incremental mode
          - {type: comment_created, user_id: 1}
        params: {challenge_id: 3}            # optional
        modes: [backfill]                    # optional: default, every mode of the rule
        expect:                              # every grant of the rule, exactly
          - {user_id: 1, level: bronze, achieved_at: 2024-01-10 10:00}
        progress:                            # optional: every user_progress row of the rule
          - {user_id: 1, value: 10, next_level: silver}
          - {user_id: 2, value: 9, next_level: bronze}

A grant's `level` may be left out when the rule has one level; `scope` defaults to ''.
`progress:` rows hold `user_id`, `value` and `next_level` (the lowest level not yet reached,
null once every level is reached), `scope` (default '') and `expires_at` (when a streak's
current run lapses; default null). Without `progress:` a case checks grants only; with it,
in every mode, the rule's progress rows must be exactly these (`progress: []` for none).

Every problem is reported at its file:line; plaudit.ruletests runs the cases.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from plaudit.errors import Problem
from plaudit.model.config import NAME_PATTERN, Config
from plaudit.model.modes import Mode
from plaudit.model.rules import RULE_SUFFIXES, Rule
from plaudit.model.yamlsource import Fields, LocatedDict, LocatedList, is_str, load_yaml_file
from plaudit.sqlgen.render import modes

CASE_KEYS = ("description", "given", "events", "params", "modes", "expect", "progress")
EXPECT_KEYS = ("user_id", "level", "scope", "achieved_at")
PROGRESS_KEYS = ("user_id", "scope", "value", "next_level", "expires_at")
EVENT_KEYS = ("type", "user_id", "occurred_at", "payload")


@dataclass(frozen=True)
class Case:
    rule: Rule
    name: str
    file: str
    line: int
    given: dict[str, Any]  # table -> list of row mappings, or a SELECT
    events: list[dict[str, Any]] | None
    params: dict[str, str]
    modes: tuple[Mode, ...]
    expect: list[dict[str, Any]]
    progress: list[dict[str, Any]] | None = None  # None: the case does not check progress

    @property
    def id(self) -> str:
        return f"{self.rule.slug}_{self.name}"


def load_cases(config: Config, rules: Sequence[Rule]) -> tuple[list[Case], list[Problem]]:
    """The test cases of `rules`, from their files and their <slug>.test.yaml files."""
    cases: list[Case] = []
    problems: list[Problem] = []
    for rule in rules:
        # <slug>.test.yaml or .test.yml, like rule files
        sources = [rule.path, *(rule.path.with_name(f"{rule.slug}.test{suffix}")
                                for suffix in RULE_SUFFIXES)]
        for path in sources:
            if not path.exists():
                continue
            file = _display(path, config.project_dir)
            document, yaml_problems = load_yaml_file(path, file)
            fields = Fields(file, yaml_problems)
            if isinstance(document, LocatedDict):
                if path != rule.path:
                    fields.check_keys(document, ("tests",))
                cases += _cases(rule, file, fields, document, config)
            elif path != rule.path and not fields.problems:
                fields.problem(1, "expected a mapping with a `tests:` key")
            problems += fields.problems
    names: dict[str, Case] = {}
    for case in cases:
        if case.id in names:
            first = names[case.id]
            message = f"duplicate test case '{case.name}' (also in {first.file}:{first.line})"
            problems.append(Problem(case.file, case.line, message))
        names.setdefault(case.id, case)
    return cases, problems


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _cases(
    rule: Rule, file: str, fields: Fields, document: LocatedDict, config: Config
) -> Iterator[Case]:
    tests = fields.field(document, "tests", lambda v: isinstance(v, dict), "must be a mapping")
    for name, spec in (tests or {}).items():
        line = tests.key_line(name)
        if NAME_PATTERN.fullmatch(name) is None:
            fields.problem(line, f"test case name '{name}' must match [a-z0-9_]+")
            continue
        if not isinstance(spec, LocatedDict):
            fields.problem(line, f"test case '{name}' must be a mapping with given: and expect:")
            continue
        count = len(fields.problems)
        fields.check_keys(spec, CASE_KEYS)
        given = _given(fields, spec)
        events = _events(fields, spec)
        params = fields.field(spec, "params", lambda v: isinstance(v, dict), "must be a mapping")
        case_modes = _modes(fields, spec, rule, bool(params))
        if "expect" not in spec:
            fields.problem(line, f"test case '{name}' has no expect: (use [] for no grants)")
        expect = _expect(fields, spec, rule)
        progress = _progress(fields, spec, rule)
        if len(fields.problems) == count:
            yield Case(
                rule,
                name,
                file,
                line,
                given,
                events,
                {str(k): _param_text(v) for k, v in (params or {}).items()},
                case_modes,
                expect,
                progress,
            )


def _param_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _given(fields: Fields, spec: LocatedDict) -> dict[str, Any]:
    given = fields.field(
        spec, "given", lambda v: isinstance(v, dict), "must map table names to rows"
    )
    result: dict[str, Any] = {}
    for table, rows in (given or {}).items():
        line = given.value_line(table)
        if isinstance(rows, str):
            result[table] = rows  # a SELECT giving the rows
        elif isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
            result[table] = [dict(r) for r in rows]
        elif rows is None:
            result[table] = []
        else:
            fields.problem(line, f"given '{table}' must be a list of rows or a SELECT")
    return result


def _events(fields: Fields, spec: LocatedDict) -> list[dict[str, Any]] | None:
    events = fields.field(spec, "events", lambda v: isinstance(v, list), "must be a list")
    if events is None:
        return None
    result = []
    for index, event in enumerate(events):
        line = events.item_line(index)
        if not isinstance(event, LocatedDict) or "type" not in event or "user_id" not in event:
            fields.problem(line, "an event must be a mapping with type and user_id")
            continue
        fields.check_keys(event, EVENT_KEYS)
        result.append(dict(event))
    return result


def _modes(fields: Fields, spec: LocatedDict, rule: Rule, params: bool) -> tuple[Mode, ...]:
    """The modes a case runs in: the rule's, or those it names. Params are for backfills
    only (incremental runs take none), so a case with params runs in backfill mode."""
    allowed: tuple[Mode, ...] = ("backfill",) if params else modes(rule)
    chosen = fields.field(spec, "modes", lambda v: isinstance(v, list), "must be a list")
    if chosen is None:
        return allowed
    for index, mode in enumerate(chosen):
        if mode not in allowed:
            message = (
                f"mode '{mode}' is not one of the rule's modes ({', '.join(modes(rule))})"
                if mode not in modes(rule)
                else f"mode '{mode}' takes no params: params apply to backfills only"
            )
            fields.problem(chosen.item_line(index), message)
    return tuple(m for m in allowed if m in chosen)


def _expect(fields: Fields, spec: LocatedDict, rule: Rule) -> list[dict[str, Any]]:
    expect = fields.field(
        spec, "expect", lambda v: isinstance(v, list), "must be a list of grants ([] for none)"
    )
    keys = [level.key for level in rule.levels]
    result = []
    for index, grant in enumerate(expect or LocatedList(spec.line)):
        line = expect.item_line(index)
        if not isinstance(grant, LocatedDict):
            fields.problem(line, "a grant must be a mapping like {user_id: 1, achieved_at: ...}")
            continue
        fields.check_keys(grant, EXPECT_KEYS)
        for key in ("user_id", "achieved_at"):
            if grant.get(key) is None:
                fields.problem(grant.line, f"missing required key '{key}'")
        level = grant.get("level", keys[0] if len(keys) == 1 else None)
        if level is None:
            fields.problem(grant.line, f"missing required key 'level' (one of {', '.join(keys)})")
        elif level not in keys:
            message = f"unknown level '{level}' (expected one of {', '.join(keys)})"
            fields.problem(grant.value_line("level"), message)
        if "achieved_at" in grant and not isinstance(grant["achieved_at"], date | str):
            fields.problem(grant.value_line("achieved_at"), "'achieved_at' must be a timestamp")
        if grant.get("scope") is not None and not is_str(grant["scope"]):
            grant["scope"] = str(grant["scope"])
        result.append({**grant, "level": level})
    return result


def _progress(fields: Fields, spec: LocatedDict, rule: Rule) -> list[dict[str, Any]] | None:
    progress = fields.field(
        spec, "progress", lambda v: isinstance(v, list), "must be a list of progress rows"
    )
    if progress is None:
        return None
    keys = [level.key for level in rule.levels]
    result: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for index, row in enumerate(progress):
        line = progress.item_line(index)
        if not isinstance(row, LocatedDict):
            fields.problem(line, "a progress row must be a mapping like {user_id: 1, value: 3, "
                                 "next_level: silver}")
            continue
        fields.check_keys(row, PROGRESS_KEYS)
        for key in ("user_id", "value", "next_level"):
            if key not in row or (key != "next_level" and row[key] is None):
                fields.problem(row.line, f"missing required key '{key}'"
                               + (" (null once every level is reached)"
                                  if key == "next_level" else ""))
        value = row.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            fields.problem(row.value_line("value"), "'value' must be a number")
        level = row.get("next_level")
        if level is not None and level not in keys:
            message = f"unknown level '{level}' (expected one of {', '.join(keys)}, or null)"
            fields.problem(row.value_line("next_level"), message)
        expires = row.get("expires_at")
        if expires is not None and not isinstance(expires, date | str):
            fields.problem(row.value_line("expires_at"), "'expires_at' must be a timestamp")
        scope = "" if row.get("scope") is None else str(row["scope"])
        user_scope = (str(row.get("user_id")), scope)
        if user_scope in seen:
            fields.problem(row.line, f"a second progress row for user_id {user_scope[0]} and "
                                     f"scope {scope!r}")
        seen.add(user_scope)
        result.append({**row, "scope": scope})
    return result
