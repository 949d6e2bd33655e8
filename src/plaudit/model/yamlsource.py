"""YAML read into plain Python values that remember their 1-based line numbers.

PyYAML's safe loader forgets where values came from and silently keeps the last of two
equal keys. Rule and config errors must name file:line, so we compose the node tree with
the SafeLoader and build the values ourselves: mappings become `LocatedDict`, sequences
`LocatedList` (a real dict and list, plus lines), scalars whatever the SafeLoader makes.

Mapping keys are kept as the text written, never resolved: YAML 1.1 would turn the key
`on:` (as in `events: {x: {on: insert}}`) into the boolean True. Merge keys (`<<`) are not
expanded; they show up as an ordinary, and so unknown, key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from plaudit.errors import Problem


class LocatedDict(dict[str, Any]):
    """A YAML mapping: a dict, plus the lines of the mapping itself, its keys and values."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.value_lines: dict[str, int] = {}

    def key_line(self, key: str) -> int:
        """Line of `key`; the mapping's own line when the key is absent."""
        return self.key_lines.get(key, self.line)

    def value_line(self, key: str) -> int:
        """Line of the value of `key`; for a block scalar (`|`, `>`) its first content line."""
        return self.value_lines.get(key, self.line)


class LocatedList(list[Any]):
    """A YAML sequence: a list, plus the lines of the sequence itself and of each item."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []

    def item_line(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


def load_yaml_file(path: Path, file: str) -> tuple[Any, list[Problem]]:
    """Read `path`; problems are reported against the display name `file`."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, [Problem(file, 1, f"cannot read file: {error.strerror or error}")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return None, [Problem(file, line, "file is not valid UTF-8")]
    return load_yaml(text, file)


def load_yaml(text: str, file: str) -> tuple[Any, list[Problem]]:
    """Parse one YAML document. Returns (value, problems); value is None for an empty
    document or a syntax error. Never raises a yaml exception."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as error:  # non-printable characters, checked up front
        line = text[: error.position].count("\n") + 1
        reason = f"unacceptable character #x{error.character:04x}: {error.reason}"
        return None, [Problem(file, line, f"invalid YAML: {reason}")]
    try:
        root = loader.get_single_node()
        if root is None:
            return None, []
        builder = _Builder(loader, file)
        return builder.build(root), builder.problems
    except yaml.MarkedYAMLError as error:
        return None, [Problem(file, _error_line(error), _error_message(error))]
    except yaml.YAMLError as error:
        return None, [Problem(file, 1, f"invalid YAML: {error}")]
    except RecursionError:  # composing and building both recurse into nested collections
        return None, [Problem(file, 1, "invalid YAML: nested too deeply")]
    finally:
        loader.dispose()


def _error_message(error: yaml.MarkedYAMLError) -> str:
    # The context says what the parser was in the middle of ("while parsing a flow
    # sequence"); without it some problems read as riddles ("but found another document").
    context = f" ({error.context})" if error.context else ""
    return f"invalid YAML: {error.problem}{context}"


def _error_line(error: yaml.MarkedYAMLError) -> int:
    mark = error.problem_mark or error.context_mark
    return mark.line + 1 if mark is not None else 1


def _node_line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _value_line(node: yaml.Node) -> int:
    # A block scalar's mark sits on the `|` indicator; its text starts on the next line,
    # and callers map offsets inside the text (render errors) to file lines from there.
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        return node.start_mark.line + 2
    return node.start_mark.line + 1


class _Builder:
    """Turns composed nodes into located values, collecting problems instead of raising."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.problems: list[Problem] = []
        # Aliases share nodes: build each once (also defuses "billion laughs" documents).
        self.built: dict[int, Any] = {}
        self.building: set[int] = set()

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def build(self, node: yaml.Node) -> Any:
        if id(node) in self.built:
            return self.built[id(node)]
        if id(node) in self.building:
            self.problem(_node_line(node), "invalid YAML: recursive alias")
            return None
        self.building.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                value: Any = self._mapping(node)
            elif isinstance(node, yaml.SequenceNode):
                value = self._sequence(node)
            else:
                value = self._scalar(node)
        finally:
            self.building.discard(id(node))
        self.built[id(node)] = value
        return value

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as error:
            # Unknown tags (`!foo`), impossible dates (`2024-13-01`), `!!int abc`, ...
            reason = error.problem if isinstance(error, yaml.MarkedYAMLError) else error
            self.problem(_node_line(node), f"invalid YAML value: {reason}")
            return None

    def _sequence(self, node: yaml.SequenceNode) -> LocatedList:
        result = LocatedList(_node_line(node))
        for item in node.value:
            result.append(self.build(item))
            result.item_lines.append(_value_line(item))
        return result

    def _mapping(self, node: yaml.MappingNode) -> LocatedDict:
        result = LocatedDict(_node_line(node))
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(_node_line(key_node), "mapping keys must be plain names")
                continue
            key = key_node.value
            if key in result:
                first = result.key_lines[key]
                self.problem(_node_line(key_node), f"duplicate key '{key}' (first at line {first})")
                continue
            result[key] = self.build(value_node)
            result.key_lines[key] = _node_line(key_node)
            result.value_lines[key] = _value_line(value_node)
        return result


def is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def is_str(value: Any) -> bool:
    return isinstance(value, str)


_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}


def describe(value: Any) -> str:
    """A YAML-flavoured name of a value's type, for messages ("a list", "a number")."""
    for python_type, name in _TYPE_NAMES.items():
        if isinstance(value, python_type):
            return name
    if isinstance(value, int | float):
        return "a number"
    return "an empty value" if value is None else f"a {type(value).__name__}"


class Fields:
    """Reads typed fields out of located mappings, recording a Problem for each bad one
    and carrying on, so that a file's every problem is reported in one go."""

    def __init__(self, file: str, problems: Iterable[Problem] = ()) -> None:
        self.file = file
        self.problems: list[Problem] = list(problems)

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def check_keys(self, mapping: LocatedDict, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in mapping:
            if key not in allowed:
                message = f"unknown key '{key}'"
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
                if close:
                    message += f" (did you mean '{close[0]}'?)"
                self.problem(mapping.key_line(key), message)

    def field(
        self,
        mapping: LocatedDict,
        key: str,
        accept: Callable[[Any], bool],
        requirement: str,
        *,
        required: bool = False,
        default: Any = None,
        label: str | None = None,
    ) -> Any:
        """The value of `key` if `accept` likes it, else `default` and a problem
        "'<label>' <requirement>". An empty optional value (`key:`) means the default."""
        if key not in mapping or (mapping[key] is None and not required):
            if required:
                self.problem(mapping.line, f"missing required key '{key}'")
            return default
        value = mapping[key]
        if accept(value):
            return value
        self.problem(mapping.value_line(key), f"'{label or key}' {requirement}")
        return default

    def text(self, mapping: LocatedDict, key: str, **options: Any) -> Any:
        """A non-empty string; `options` as for field()."""
        return self.field(mapping, key, is_text, "must be a non-empty string", **options)

    def boolean(self, mapping: LocatedDict, key: str, default: bool) -> Any:
        return self.field(mapping, key, is_bool, "must be true or false", default=default)

    def matching(
        self, mapping: LocatedDict, key: str, pattern: re.Pattern[str], **options: Any
    ) -> Any:
        """A string matching `pattern` in full; `options` as for field()."""

        def accept(value: Any) -> bool:
            return isinstance(value, str) and pattern.fullmatch(value) is not None

        return self.field(mapping, key, accept, f"must match {pattern.pattern}", **options)

    def choice(
        self, mapping: LocatedDict, key: str, choices: tuple[str, ...], **options: Any
    ) -> Any:
        """One of `choices`; `options` as for field()."""
        requirement = f"must be one of {', '.join(choices)}"
        return self.field(mapping, key, lambda v: v in choices, requirement, **options)
