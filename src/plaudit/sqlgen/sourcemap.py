"""Which line of a rule file each line of its rendered query comes from.

Jinja drops the text of branches not taken, so rendered line n is not template line n once
a `{% if %}` spans lines. To map back, the query is rendered a second time with a mark in
front of every line of template text (a token-stream filter adds them, so tags and
expressions are untouched); each rendered line then names its template line, and the
marks are removed again. The text left is exactly what `render_query` produces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream

from plaudit.errors import Problem
from plaudit.model.config import Config
from plaudit.model.modes import Mode
from plaudit.model.rules import Rule
from plaudit.sqlgen.render import environment, template_context

# Control characters cannot occur in a rule file (YAML refuses them), so they are safe marks.
_MARK = re.compile("\x02(\\d+)\x03")


def _mark(line: int) -> str:
    return f"\x02{line}\x03"


class _LineMarks(Extension):
    """Prefixes each line of template text with the mark of its template line."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        for token in stream:
            if token.type != "data":
                yield token
                continue
            lines = token.value.split("\n")
            marked = "\n".join(
                _mark(token.lineno + offset) + text for offset, text in enumerate(lines)
            )
            yield Token(token.lineno, "data", marked)


@dataclass(frozen=True)
class MappedQuery:
    """A rendered query and, for each of its lines, the 1-based line in the template."""

    text: str
    template_lines: tuple[int, ...]

    def template_line(self, offset: int) -> int:
        """The template line of the character at `offset` in `text`."""
        line = self.text.count("\n", 0, max(0, offset))
        return self.template_lines[min(line, len(self.template_lines) - 1)]


def render_mapped(rule: Rule, mode: Mode, config: Config | None = None) -> MappedQuery:
    """The rule's query rendered for `mode` (as `render_query` strips it) with its line map.
    Raises whatever rendering raises; call it on a template that renders."""
    template = environment(extensions=(_LineMarks,)).from_string(rule.query)
    schema = config.schema if config else "plaudit"
    marked = template.render(template_context(rule, mode, schema))
    lines: list[int] = []
    texts: list[str] = []
    current = 1
    for raw in marked.split("\n"):
        found = _MARK.search(raw)
        # a line without a mark continues an expression's output: it belongs with the last
        current = int(found.group(1)) if found else current
        lines.append(current)
        texts.append(_MARK.sub("", raw))
    text = "\n".join(texts)
    stripped = text.lstrip()
    skipped = text[: len(text) - len(stripped)].count("\n")
    query = stripped.rstrip().rstrip(";")
    kept = query.count("\n") + 1
    return MappedQuery(query, tuple(lines[skipped : skipped + kept]))


_LOCATED = re.compile(r"(?P<file>[^\n]+?):(?P<line>\d+): (?P<message>.*)", re.DOTALL)


def rule_file(rule: Rule) -> str:
    """The rule's file as problems name it."""
    return rule.file or rule.path.as_posix()


def located(rule: Rule, text: str) -> Problem:
    """A Problem from a render error's "file:line: slug: message" text."""
    match = _LOCATED.fullmatch(text)
    if match is None:
        return Problem(rule_file(rule), rule.query_line, _strip_slug(rule, text))
    file = match["file"]
    if file in (str(rule.path), rule.path.as_posix()):
        file = rule_file(rule)
    return Problem(file, int(match["line"]), _strip_slug(rule, match["message"]))


def _strip_slug(rule: Rule, message: str) -> str:
    prefix = f"{rule.slug}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
