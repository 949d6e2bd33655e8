"""The docs: a short README, the manual in docs/, a CLI reference that cannot go stale, and
an exit-code statement in every command's --help."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from plaudit.cli import cli
from plaudit.cli.reference import WIDTH, commands, reference

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = [tuple(c.command_path.split()[1:]) for c in commands()]

# The commands that exit 1 (a rule, a case, a check failed, a rule file is invalid) and 3
# (a backfill skipped rules another run held); every command exits 0 and 2.
EXIT_1 = {"init", "deploy", "render", "backfill", "validate", "lint", "test", "preview", "run",
          "deliver",
          "revoke", "schedule", "status", "demo", "export"}
EXIT_3 = {"backfill", "demo"}


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="plaudit",
                                terminal_width=WIDTH)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_cli_reference_is_current() -> None:
    assert CLI_MD.read_text(encoding="utf-8") == reference(), (
        "docs/cli.md is stale: run `make docs` (python -m plaudit.cli.reference)")


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "plaudit")
def test_the_reference_holds_each_commands_help(path: tuple[str, ...]) -> None:
    section = f"## {' '.join(('plaudit', *path))}\n\n```text\n{_help(path)}```\n"
    assert section in reference()


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "plaudit")
def test_every_command_states_its_exit_codes(path: tuple[str, ...]) -> None:
    text = " ".join(_help(path).split())  # unwrapped
    match = re.search(r"Exit codes: 0 ok; (.*)\.", text)
    assert match, f"`plaudit {' '.join(path)} --help` does not state its exit codes"
    stated = {int(code) for code in re.findall(r"(?:^|; )(\d) ", match.group(1))}
    name = path[0] if path else ""
    expected = {2} | ({1} if name in EXIT_1 or not path else set()) | (
        {3} if name in EXIT_3 or not path else set())
    assert stated == expected, f"plaudit {' '.join(path)}: states {sorted(stated)}"


def test_every_exit_in_a_command_is_stated() -> None:
    """A command that gains a sys.exit(...) must say so in its help (EXIT_1, EXIT_3 above)."""
    codes = {"1": 1, "EXIT_FAILED": 1, "EXIT_SKIPPED": 3}
    for context in commands():
        command = context.command
        if command.callback is None or isinstance(command, click.Group):
            continue
        source = inspect.getsource(command.callback)
        for code in re.findall(r"sys\.exit\((\w+)\)", source):
            name = context.command_path.split()[1]
            assert name in {1: EXIT_1, 3: EXIT_3}[codes[code]], (
                f"plaudit {name} exits {code}; its --help must say when")
def test_the_readme_is_short_and_links_into_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    linked = set(re.findall(r"\]\((docs/[^)#]+)", readme))
    assert linked >= {"docs/README.md", "docs/cli.md"}, linked


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    found = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_pages_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        missing = not path.exists() or (
            bool(anchor) and path.suffix == ".md" and anchor not in _anchors(path))
        if missing:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"
