"""`plaudit lint`: sqlfluff (dialect postgres) on each rule's query, in every mode it runs in.

sqlfluff lints the template itself through its Jinja templater, given plaudit's helpers for
the mode at hand (the same ones `render` uses), so it knows which characters of the output
came from the analyst's text and which from a helper: violations are located in the query
block, mapped to lines of the YAML file, and `--fix` edits only the analyst's text, never
the helpers' output. The project's own sqlfluff settings (.sqlfluff, setup.cfg, tox.ini,
pyproject.toml at the project root) are honoured; the dialect is always postgres.

`--fix` rewrites the lines of the `query: |` block and nothing else of the file, so
comments and layout elsewhere stay as they were; the result is read back and must give
the fixed query, or the file is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

from plaudit.errors import RenderError
from plaudit.model.config import Config
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule, load_rule
from plaudit.sqlgen.render import environment, modes, template_context

if TYPE_CHECKING:  # sqlfluff is imported when linting: it takes a second to load
    from sqlfluff.core import FluffConfig, Linter

DIALECT = "postgres"
# Passes of --fix over the modes: a fix in one mode can enable another in the other.
FIX_PASSES = 3


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    column: int
    code: str
    message: str
    modes: tuple[Mode, ...]  # the modes it occurs in
    of_modes: int = 1  # how many modes the rule has

    def __str__(self) -> str:
        only = f" ({self.modes[0]} mode)" if len(self.modes) < self.of_modes else ""
        return f"{self.file}:{self.line}:{self.column}: {self.code} {self.message}{only}"


@dataclass
class LintResult:
    violations: list[Violation] = field(default_factory=list)
    fixed: dict[str, int] = field(default_factory=dict)  # file -> violations fixed
    unfixable: list[str] = field(default_factory=list)  # why a file could not be fixed


def lint(config: Config, rules: Sequence[Rule], *, fix: bool = False) -> LintResult:
    """Lint (and with `fix`, first fix) every rule."""
    fluff = _fluff_config(config.project_dir)
    result = LintResult()
    for rule in rules:
        found = lint_rule(rule, config, fluff)
        if fix:
            fixed = _fix(rule, config, fluff, result)
            if fixed is not rule:
                rule, before = fixed, len(found)
                found = lint_rule(rule, config, fluff)
                result.fixed[rule.file or rule.path.as_posix()] = before - len(found)
        result.violations += found
    result.violations.sort(key=lambda v: (v.file, v.line, v.column, v.code, v.message))
    return result


def lint_rule(rule: Rule, config: Config, fluff: FluffConfig) -> list[Violation]:
    """The rule's violations, each once, with the modes it occurs in."""
    found: dict[tuple[int, int, str, str], list[Mode]] = {}
    indent = _indent(rule)
    for mode in modes(rule):
        linted = _linter(rule, mode, config, fluff).lint_string(_source(rule), fname=rule.file)
        for v in linted.get_violations():
            line = rule.query_line + max(1, v.line_no) - 1
            column = indent + max(1, v.line_pos)
            found.setdefault((line, column, v.rule_code(), v.desc()), []).append(mode)
    file = rule.file or rule.path.as_posix()
    count = len(modes(rule))
    return [
        Violation(file, line, column, code, message, tuple(dict.fromkeys(in_modes)), count)
        for (line, column, code, message), in_modes in found.items()
    ]


def _indent(rule: Rule) -> int:
    """Where the query's first line starts in its line of the file, less its own indent:
    the block's indentation, or the column after `query: "` for a one-line query."""
    try:
        lines = rule.path.read_text().splitlines()
        text = lines[rule.query_line - 1]
    except (OSError, IndexError):
        return 0
    first = rule.query.split("\n", 1)[0]
    at = text.find(first.strip()) if first.strip() else -1
    return max(0, at - (len(first) - len(first.lstrip()))) if at >= 0 else 0


def _source(rule: Rule) -> str:
    """The query as linted: one trailing newline, as in a `query: |` block."""
    return rule.query.rstrip("\n") + "\n"


# -- sqlfluff, with plaudit's templating -------------------------------------------------


def _fluff_config(project_dir: Path) -> FluffConfig:
    from sqlfluff.core import FluffConfig
    from sqlfluff.core.config import clear_config_caches, load_config_at_path

    clear_config_caches()  # a long-lived process must see an edited .sqlfluff
    return FluffConfig(
        configs=load_config_at_path(str(project_dir)),
        overrides={"dialect": DIALECT, "templater": "jinja", "render_variant_limit": 1},
    )


def _linter(rule: Rule, mode: Mode, config: Config, fluff: FluffConfig) -> Linter:
    from sqlfluff.core import Linter
    from sqlfluff.core.errors import SQLTemplaterError
    from sqlfluff.core.templaters import JinjaTemplater

    context = template_context(rule, mode, config.schema)

    class RuleTemplater(JinjaTemplater):
        """sqlfluff's Jinja templater with plaudit's environment and helpers."""

        name = "plaudit"

        def construct_render_func(
            self, fname: str | None = None, config: FluffConfig | None = None
        ) -> tuple[jinja2.Environment, dict[str, Any], Callable[[str], str]]:
            env = environment(keep_trailing_newline=True)  # sqlfluff's tracer needs it

            def render_func(text: str) -> str:
                try:
                    return env.from_string(text, globals=context).render()
                except RenderError as exc:
                    raise SQLTemplaterError(str(exc)) from exc

            return env, dict(context), render_func

    templater = RuleTemplater()
    # The templater is chosen by name from the config; this one needs the rule and mode,
    # so it is handed over directly (sqlfluff checks the two agree).
    rule_config = fluff.copy()
    rule_config._configs["core"]["templater_obj"] = templater
    linter = Linter(config=rule_config)
    linter.templater = templater
    return linter


# -- --fix -----------------------------------------------------------------------------------


def _fix(rule: Rule, config: Config, fluff: FluffConfig, result: LintResult) -> Rule:
    """Fix the rule's query in every mode and write it back into the file's query block.
    Returns the rule as it is now on disk (`rule` itself when nothing changed)."""
    source = _source(rule)
    fixed = source
    for _ in range(FIX_PASSES):
        before = fixed
        for mode in modes(rule):
            current = replace(rule, query=fixed)
            linted = _linter(current, mode, config, fluff).lint_string(
                fixed, fname=rule.file, fix=True
            )
            fixed, _ = linted.fix_string()
        if fixed == before:
            break
    if fixed == source:
        return rule
    file = rule.file or rule.path.as_posix()
    try:
        write_query(rule.path, fixed)
    except ValueError as exc:
        result.unfixable.append(f"{file}: not fixed: {exc}")
        return rule
    return load_rule(rule.path, config.project_dir)


def write_query(path: Path, query: str) -> None:
    """Replace the content of the file's `query: |` block with `query`, leaving every other
    byte of the file as it was. Raises ValueError (and writes nothing) when the query is
    not a literal block or the new file does not read back as `query`."""
    text = path.read_bytes().decode()  # bytes: keep the file's own line endings
    lines = text.splitlines(keepends=True)
    node = _query_node(text)
    if node.style != "|":
        raise ValueError("the query is not a literal block (`query: |`)")
    header = node.start_mark.line  # 0-based line of the `|`
    end = node.end_mark.line if node.end_mark.column == 0 else node.end_mark.line + 1
    content = [i for i in range(header + 1, min(end, len(lines))) if lines[i].strip()]
    if not content:
        raise ValueError("the query block is empty")
    first, last = content[0], content[-1]
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip(" "))]
    newline = "\r\n" if lines[first].endswith("\r\n") else "\n"
    block = [
        (indent + line if line.strip() else "") + newline
        for line in query.rstrip("\n").split("\n")
    ]
    if not lines[last].endswith(("\n", "\r")):
        block[-1] = block[-1].rstrip("\r\n")
    updated = "".join(lines[:first] + block + lines[last + 1 :])
    reread = _query_node(updated)
    if reread.value.rstrip("\n") != query.rstrip("\n"):
        raise ValueError("the rewritten block would not read back as the fixed query")
    path.write_bytes(updated.encode())


def _query_node(text: str) -> yaml.ScalarNode:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "query":
                if isinstance(value, yaml.ScalarNode):
                    return value
                break
    raise ValueError("no query: string at the top level")
