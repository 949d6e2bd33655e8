"""`plaudit validate`: every problem of a rule set in one run, each at its file:line.

Offline. Rule files and their test cases are read as far as they go (one invalid file
does not hide the problems of the others); each valid rule's template is then checked
statically, on its Jinja syntax tree, for what a single render would only report one at a
time (undefined names, unknown or unused params, `batch` outside incremental mode), and
finally rendered in every mode it runs in, which checks the SQL (one SELECT, the columns
its kind needs). Lines point into the YAML file, inside the `query:` block when the
problem is there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import jinja2
from jinja2 import meta, nodes
from pglast.parser import ParseError, parse_sql_json

from plaudit.authoring.testcases import load_cases
from plaudit.errors import Problem, RuleError
from plaudit.model.config import Config
from plaudit.model.denylist import forbidden_calls
from plaudit.model.dependencies import check as check_dependencies
from plaudit.model.face import unknown_categories
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule, read_rules
from plaudit.sqlgen.render import MAX_QUERY, environment, modes, render
from plaudit.sqlgen.sourcemap import located, render_mapped, rule_file

# What a template may call or read; anything else is undefined.
HELPERS = ("mode", "is_incremental", "param", "filter", "affected", "unfinished", "batch", "badge")
@dataclass
class Validation:
    """The outcome: the rules that passed every check, and every problem found."""

    rules: list[Rule] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # worth a look; not failures


def validate(config: Config) -> Validation:
    """Check the project's rule files (offline)."""
    rules, problems = read_rules(config.rules_dir, root=config.project_dir)
    try:
        check_dependencies(rules)
    except RuleError as exc:
        problems += without_slugs(exc.problems, rules)
    problems += unknown_categories(rules, config)
    _, case_problems = load_cases(config, rules)  # the rules' test cases, as `test` reads them
    problems += case_problems
    failed = {p.file for p in problems}
    result = Validation(problems=problems)
    for rule in rules:
        found = check_rule(rule, config)
        result.problems += found
        if not found and rule_file(rule) not in failed:
            result.rules.append(rule)
    result.problems = sorted(set(result.problems), key=lambda p: (p.file, p.line, p.message))
    result.warnings = unproduced_triggers(rules, config)
    return result


def unproduced_triggers(rules: Sequence[Rule], config: Config) -> list[Problem]:
    """Triggers that no `events:` mapping produces, when plaudit.yaml has mappings: a typo,
    or an event the app enqueues itself (`plaudit.track`), which is fine."""
    if not config.events:
        return []  # the app enqueues every event itself
    produced = {event.name for event in config.events}
    return [
        Problem(rule_file(rule), rule.triggers_line,
                f"warning: trigger '{trigger}' is produced by no events: mapping in "
                "plaudit.yaml (fine if the app enqueues it with plaudit.track)")
        for rule in rules for trigger in rule.triggers if trigger not in produced
    ]


def check_rule(rule: Rule, config: Config | None = None) -> list[Problem]:
    """The problems of one loaded rule: its template, then its rendering in each mode."""
    try:
        tree = environment().parse(rule.query)
    except jinja2.TemplateSyntaxError as exc:
        return [_at(rule, exc.lineno, f"template error: {exc.message}")]
    problems = list(_template_problems(rule, tree))
    taken = {p.line for p in problems}
    per_mode = {mode: _render_problems(rule, mode, config) for mode in modes(rule)}
    for mode, found in per_mode.items():
        for problem in found:
            if problem.line in taken:
                continue  # the static check already said it, better
            others = [m for m in per_mode if m != mode]
            if others and not all(problem in per_mode[m] for m in others):
                problem = Problem(problem.file, problem.line, f"{problem.message} ({mode} mode)")
            problems.append(problem)
    return sorted(set(problems), key=lambda p: (p.line, p.message))


def _at(rule: Rule, template_line: int, message: str) -> Problem:
    return Problem(rule_file(rule), rule.query_line + template_line - 1, message)


def without_slugs(problems: Iterable[Problem], rules: Sequence[Rule]) -> list[Problem]:
    """Messages of the render, dependency and contract checks start with the rule's slug,
    which file:line already names."""
    slugs = {rule_file(rule): f"{rule.slug}: " for rule in rules}
    result = []
    for problem in problems:
        prefix = slugs.get(problem.file, "")
        if prefix and problem.message.startswith(prefix):
            problem = Problem(problem.file, problem.line, problem.message[len(prefix) :])
        result.append(problem)
    return result


# -- the static checks, on the template's syntax tree ------------------------------------


def _template_problems(rule: Rule, tree: nodes.Template) -> Iterator[Problem]:
    declared = [p.name for p in rule.params]
    undeclared = meta.find_undeclared_variables(tree)
    used_params: set[str] = set()
    dynamic_params = False
    seen: set[tuple[int, str]] = set()
    for name in tree.find_all(nodes.Name):
        unknown = name.ctx == "load" and name.name in undeclared and name.name not in HELPERS
        if unknown and (name.lineno, name.name) not in seen:
            seen.add((name.lineno, name.name))
            yield _at(rule, name.lineno, f"'{name.name}' is undefined")
    for call in tree.find_all(nodes.Call):
        if not isinstance(call.node, nodes.Name) or call.node.name not in ("param", "filter"):
            continue
        position = 0 if call.node.name == "param" else 1
        argument = call.args[position] if len(call.args) > position else None
        if not isinstance(argument, nodes.Const) or not isinstance(argument.value, str):
            dynamic_params = True
            continue
        used_params.add(argument.value)
        if argument.value not in declared:
            names = ", ".join(declared) or "none"
            message = f"unknown param '{argument.value}' (declared: {names})"
            yield _at(rule, call.lineno, message)
    if not dynamic_params:
        for param in rule.params:
            if param.name not in used_params:
                message = f"param '{param.name}' is declared but the query never uses it"
                yield Problem(rule_file(rule), param.line, message)
    yield from _mode_problems(rule, tree)


def _mode_problems(rule: Rule, tree: nodes.Template) -> Iterator[Problem]:
    """Helpers used in a mode where they mean nothing, or missing where they are needed."""
    names = [n for n in tree.find_all(nodes.Name) if n.ctx == "load"]
    used = {n.name for n in names}
    if not rule.triggers:
        for name in names:
            if name.name in ("batch", "is_incremental"):
                message = (
                    f"`{name.name}` is used, but the rule has no triggers: "
                    "it never runs in incremental mode"
                )
                yield _at(rule, name.lineno, message)
        return
    for name in _unguarded_batch(tree.body, guarded=False):
        message = (
            "`batch` is only defined in incremental mode; use it inside {% if is_incremental() %}"
        )
        yield _at(rule, name.lineno, message)
    if not used & {"affected", "batch"}:
        message = (
            "the rule has triggers, but its query uses neither affected() nor batch: "
            "every incremental run would re-check all users"
        )
        yield _at(rule, 1, message)


def _is_incremental_test(test: nodes.Node) -> bool | None:
    """True for `is_incremental()` or `mode == 'incremental'`, False for their negation,
    None for any other condition."""
    if isinstance(test, nodes.Not):
        inner = _is_incremental_test(test.node)
        return None if inner is None else not inner
    if isinstance(test, nodes.Call) and isinstance(test.node, nodes.Name):
        return True if test.node.name == "is_incremental" else None
    if isinstance(test, nodes.Compare) and len(test.ops) == 1:
        sides = [test.expr, test.ops[0].expr]
        if any(isinstance(s, nodes.Name) and s.name == "mode" for s in sides):
            values: list[object] = [s.value for s in sides if isinstance(s, nodes.Const)]
            if values in (["incremental"], ["backfill"]):
                equal = test.ops[0].op == "eq"
                return equal == (values[0] == "incremental")
    return None


def _unguarded_batch(body: Iterable[nodes.Node], guarded: bool) -> Iterator[nodes.Name]:
    for node in body:
        if isinstance(node, nodes.If):
            branches = [(node.test, node.body), *((e.test, e.body) for e in node.elif_)]
            for test, branch in branches:
                incremental = _is_incremental_test(test)
                yield from _unguarded_names(test, guarded)
                yield from _unguarded_batch(branch, guarded or incremental is True)
            first = _is_incremental_test(node.test)
            yield from _unguarded_batch(node.else_, guarded or first is False)
        else:
            yield from _unguarded_names(node, guarded)


def _unguarded_names(node: nodes.Node, guarded: bool) -> Iterator[nodes.Name]:
    if isinstance(node, nodes.Name):
        if node.name == "batch" and node.ctx == "load" and not guarded:
            yield node
        return
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.If):
            yield from _unguarded_batch([child], guarded)
        else:
            yield from _unguarded_names(child, guarded)


# -- rendering, in each mode ---------------------------------------------------------------


def _render_problems(rule: Rule, mode: Mode, config: Config | None) -> list[Problem]:
    """Render the rule as deploy would; the SQL's syntax errors are mapped to the template
    line they come from (a dropped `{% if %}` branch shifts the rendered lines)."""
    try:
        mapped = render_mapped(rule, mode, config)
    except Exception:  # render() below reports it, with its line
        mapped = None
    if mapped is not None and len(mapped.text) <= MAX_QUERY:  # else render() says so
        try:
            parse_sql_json(mapped.text)
        except ParseError as exc:
            message, offset = exc.args
            line = mapped.template_line(offset or 0)
            return [_at(rule, line, f"SQL syntax error: {message}")]
        # every refused call, each at its template line (render stops at the first)
        schema = config.schema if config else "plaudit"
        allowed = config.allow_functions if config else ()
        refused = [
            _at(rule, mapped.template_line(offset), message)
            for offset, message in forbidden_calls(mapped.text, schema, allowed)
        ]
        if refused:
            return refused
    try:
        render(rule, mode, config)
    except RuleError as exc:
        return list(exc.problems)
    except Exception as exc:  # RenderError, or what a helper raised (a call with no argument)
        return [located(rule, str(exc))]
    return []
