"""The CLI reference, docs/cli.md, generated from every command's --help.

`make docs` (python -m plaudit.cli.reference) writes it; tests/test_docs.py fails when the
file differs from what this module generates, so the reference cannot go stale.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from plaudit.cli.main import cli

WIDTH = 88  # help is wrapped at a fixed width, whatever the terminal
DEFAULT_PATH = Path("docs") / "cli.md"
HEADER = """\
# CLI reference

Generated from `plaudit --help` and each command's `--help` by `make docs`
(`python -m plaudit.cli.reference`); do not edit by hand. `tests/test_docs.py` fails when it
is stale. The manual starts at [the index](README.md).
"""


def commands(
    group: click.Group = cli, context: click.Context | None = None
) -> Iterator[click.Context]:
    """A context for the group and for each of its commands and subcommands, in name order."""
    if context is None:
        settings = {**group.context_settings, "terminal_width": WIDTH,
                    "max_content_width": WIDTH}
        context = click.Context(group, info_name="plaudit", **settings)
        yield context
    for name, command in sorted(group.commands.items()):
        child = click.Context(command, info_name=name, parent=context)
        yield child
        if isinstance(command, click.Group):
            yield from commands(command, child)


def reference() -> str:
    """docs/cli.md's text: a section per command holding its --help output."""
    sections = [HEADER]
    for context in commands():
        sections.append(
            f"## {context.command_path}\n\n```text\n{context.command.get_help(context)}\n```\n"
        )
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> None:
    """Write the reference to the given path (default: docs/cli.md)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reference(), encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
