"""Every test case, one pytest test each, named <slug>_<case> and run in every mode of its
rule (backfill and, when events trigger it, incremental) through plaudit.ruletests, as
`plaudit test` runs them:

- the bundled rules' cases (rules/*.yaml `tests:` and rules/*.test.yaml);
- the kinds' specification (tests/kinds/rules/: each file a rule of one kind and the cases
  pinning its grants, exact dates and user_progress rows; tests/kinds/activity.sql is the
  app table they read).

`pytest -k commentator_tenth` or `pytest -k streak_daily_in_berlin_dst` runs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from plaudit.authoring.ruletests import Outcome, format_failure, run_cases
from plaudit.authoring.testcases import Case, load_cases
from plaudit.errors import Problem
from plaudit.model.config import Config, load_config
from plaudit.model.kinds import KINDS as REGISTERED_KINDS
from plaudit.model.rules import Rule, load_rules
from plaudit.runtime.db import connect

REPO = Path(__file__).resolve().parents[1]
KINDS = REPO / "tests" / "kinds"


@dataclass
class Suite:
    name: str
    config: Config
    rules: list[Rule]
    cases: list[Case]
    problems: list[Problem]
    tables: str  # the SQL creating the app tables the rules read, when the demo's do not hold them

    def __str__(self) -> str:
        return self.name


def _suite(name: str, project: Path, tables: str = "") -> Suite:
    config = load_config(project)
    rules = load_rules(config.rules_dir, root=project)
    cases, problems = load_cases(config, rules)
    return Suite(name, config, rules, cases, problems, tables)


SUITES = [
    _suite("rules", REPO),
    _suite("kinds", KINDS, (KINDS / "activity.sql").read_text()),
]


@pytest.mark.parametrize("suite", SUITES, ids=str)
def test_the_case_files_are_valid(suite):
    assert [str(p) for p in suite.problems] == []


@pytest.mark.parametrize("suite", SUITES, ids=str)
def test_every_rule_ships_with_cases(suite):
    assert sorted({r.slug for r in suite.rules} - {c.rule.slug for c in suite.cases}) == []


def test_the_kinds_specification_covers_every_kind_in_both_modes():
    [kinds] = [s for s in SUITES if s.name == "kinds"]
    # a kind added to the registry without a case file fails here
    assert {c.rule.kind for c in kinds.cases} == set(REGISTERED_KINDS)
    assert {c.modes for c in kinds.cases} == {("backfill", "incremental")}


# A suite's cases run together the first time one is asked for (one scratch schema, not one each).
OUTCOMES: dict[str, dict[str, list[Outcome]]] = {}


@pytest.mark.parametrize(
    "suite, case",
    [(suite, case) for suite in SUITES for case in suite.cases],
    ids=[case.id for suite in SUITES for case in suite.cases],
)
def test_rule_case(suite, case, request):
    if suite.name not in OUTCOMES:  # a database only for the first: the cases roll back
        outcomes = OUTCOMES.setdefault(suite.name, {})
        with connect(request.getfixturevalue("dsn")) as conn:
            if suite.tables:
                conn.execute(suite.tables)
            for outcome in run_cases(conn, suite.config, suite.rules, suite.cases):
                outcomes.setdefault(outcome.case.id, []).append(outcome)
    outcomes = OUTCOMES[suite.name][case.id]
    assert [o.mode for o in outcomes] == list(case.modes)
    zone = ZoneInfo(suite.config.timezone)
    failures = [format_failure(o, zone) for o in outcomes if not o.passed]
    assert not failures, "\n".join(failures)
