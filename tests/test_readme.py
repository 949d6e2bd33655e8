"""The README's examples are checked (issue 13): its `make demo` output is what `plaudit demo`
prints, line for line in order, apart from its `...` elisions, times taken, the moment
of the live events and how many user pages the report writes. A README that drifts from the code fails here."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# what differs between runs: seconds taken, the live events' time, and the users they pick
# (so how many of their writes cross a threshold)
_VARYING = [
    (re.compile(r"\d[\d,]* granted, \d[\d,]* notifications"), "<n> granted, <n> notifications"),
    (re.compile(r"\b\d+(\.\d+)?s\b"), "<t>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d"), "<now>"),
    # the report's user pages: the users on this month's boards, which live events may join
    (re.compile(r"\d[\d,]* user pages"), "<n> user pages"),
]


def _normal(line: str) -> str:
    for pattern, token in _VARYING:
        line = pattern.sub(token, line)
    return " ".join(line.split())


def readme_demo_output() -> list[str]:
    """The lines the README shows `make demo` printing, elisions (`...`) left out."""
    text = README.read_text(encoding="utf-8")
    block = text.split("$ make demo\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines()
            if line.strip() and not line.strip().startswith("...")]


@pytest.mark.slow
def test_the_readmes_demo_output_is_what_the_demo_prints(run_cli, demo_project):
    shown = readme_demo_output()
    assert len(shown) > 20
    shutil.copy(README.parent / "plaudit.yaml", demo_project.path / "plaudit.yaml")
    result = run_cli(demo_project, "demo")  # the test database is a demo database
    assert result.exit_code == 0, result.output
    # stdout and stderr come apart here; the README shows them as a terminal interleaves
    # them, so each line is looked for, in order, in the stream that has it
    streams = [[_normal(line) for line in text.splitlines()]
               for text in (result.stdout, result.stderr)]
    cursors = [0, 0]
    missing = []
    for line in shown:
        want = _normal(line)
        if "plaudit_award: {" in line:  # which users a live round picks varies: the form stays
            want = want.split(' "user_id"')[0]
        for stream, printed in enumerate(streams):
            found = next((i for i in range(cursors[stream], len(printed))
                          if printed[i] == want or ("plaudit_award: {" in line
                                                    and printed[i].startswith(want))), None)
            if found is not None:
                cursors[stream] = found + 1
                break
        else:
            missing.append(line)
    assert missing == [], "README lines the demo does not print (in order):\n" + "\n".join(
        missing)
