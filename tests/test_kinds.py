"""What the kinds refuse: a run that fails and names why, a query or thresholds a kind
cannot read, reported at render time with the rule file's line.

What the kinds grant, with exact dates and progress, is specified as rule test cases in
tests/kinds/rules/ (run by tests/test_rule_cases.py in both modes).
"""

from __future__ import annotations

import pytest

from plaudit.errors import RenderError
from plaudit.runtime.deploy import deploy_rules
from plaudit.sqlgen.render import render


def test_an_award_level_that_is_not_one_of_the_rules_fails_the_run_and_names_it(
        project, engine_for, sql):
    project.write("rules/medal.yaml", """
        slug: medal
        name: Medal
        kind: award
        levels:
          - {key: gold, name: Gold}
          - {key: silver, name: Silver}
        query: |
          SELECT 1::bigint AS user_id, now() AS achieved_at, 'platinum' AS level
    """)
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    [result] = engine.backfill(project.rules())
    assert (result.status, result.message) == ("failed", (
        'medal: insert or update on table "user_badge" violates foreign key constraint '
        '"user_badge_badge_level_fkey" (SQLSTATE 23503): Key (badge, level)=(medal, platinum) '
        'is not present in table "badge_level".'))


@pytest.mark.parametrize("kind, query, message", [
    ("sum", "SELECT g.user_id, g.occurred_at FROM given AS g",
     "rules/probe.yaml:9: probe: a sum query must return user_id, occurred_at, amount; "
     "missing column amount"),
    ("gauge", "SELECT g.user_id, g.occurred_at AS achieved_at FROM given AS g",
     "rules/probe.yaml:9: probe: a gauge query must return user_id, value, achieved_at; "
     "missing column value"),
    ("streak", "SELECT g.user_id, g.occurred_at FROM given AS g",
     "rules/probe.yaml:5: probe: streak thresholds must be whole numbers"),
])
def test_kind_checks_at_render(project, kind, query, message):
    project.write("rules/probe.yaml", f"""
        slug: probe
        name: Probe
        kind: {kind}
        levels:
          - {{key: bronze, name: Bronze, threshold: 2.5}}
          - {{key: silver, name: Silver, threshold: 3}}
        period: week
        query: |
          {query}
    """)
    [rule] = project.rules()
    with pytest.raises(RenderError) as err:
        render(rule, "backfill")
    assert str(err.value) == message
