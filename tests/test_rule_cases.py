"""Every test case of the bundled rules (rules/*.yaml `tests:` and rules/*.test.yaml), one
pytest test each, named <slug>_<case>: `pytest -k commentator_tenth` runs one."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from plaudit.authoring.ruletests import Outcome, format_failure, run_cases
from plaudit.authoring.testcases import load_cases
from plaudit.model.config import load_config
from plaudit.model.rules import load_rules
from plaudit.runtime.db import connect

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_config(REPO)
RULES = load_rules(CONFIG.rules_dir, root=REPO)
CASES, PROBLEMS = load_cases(CONFIG, RULES)


def test_the_case_files_are_valid():
    assert [str(p) for p in PROBLEMS] == []


def test_every_bundled_rule_ships_with_cases():
    assert sorted({r.slug for r in RULES} - {c.rule.slug for c in CASES}) == []


# All cases run together the first time one is asked for (one scratch schema, not one each).
OUTCOMES: dict[str, list[Outcome]] = {}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_rule_case(case, request):
    if not OUTCOMES:  # a database only for the first: the cases roll everything back
        with connect(request.getfixturevalue("dsn")) as conn:
            for outcome in run_cases(conn, CONFIG, RULES, CASES):
                OUTCOMES.setdefault(outcome.case.id, []).append(outcome)
    outcomes = OUTCOMES[case.id]
    failures = [format_failure(o, ZoneInfo(CONFIG.timezone)) for o in outcomes if not o.passed]
    assert not failures, "\n".join(failures)
