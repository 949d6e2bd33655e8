"""Every kind, table-driven: given rows, expected grants with exact dates, expected progress.

Each tests/kinds/<kind>.yaml holds a base rule reading the table `given`, the table's
columns, and cases; a case may override keys of the rule (query, levels, period, timezone)
and write plaudit.yaml (`config:`). One generic test runs each case as a backfill on a real
PostgreSQL; the ids are `<kind>_<case>`, so `pytest -k streak_dst` finds one.

    grants:   [user_id, level, scope, achieved_at]
    progress: [user_id, scope, value, next_level (null when all reached)[, expires_at]]
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from plaudit.errors import RenderError
from plaudit.runtime.deploy import deploy_rules
from plaudit.sqlgen.render import render

CASES_DIR = Path(__file__).parent / "kinds"


def load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        for case in spec["cases"]:
            params.append(pytest.param(spec, case, id=f"{path.stem}_{case['name']}"))
    return params


def text(value: Any) -> str | None:
    return None if value is None else str(value)


def number(value: Any) -> str | None:
    return None if value is None else f"{Decimal(str(value)).normalize():f}"


@pytest.mark.parametrize("spec, case", load_cases())
def test_kind_case(spec, case, project, engine_for, sql):
    rule = {**spec["rule"], **case.get("rule", {})}
    project.write(f"rules/{rule['slug']}.yaml", yaml.safe_dump(rule, sort_keys=False))
    if "config" in case:
        project.write("plaudit.yaml", case["config"])
    columns = spec["columns"]
    sql("CREATE TABLE given (" + ", ".join(f"{c} {t}" for c, t in columns.items()) + ")")
    casts = ", ".join(f"%s::{t}" for t in columns.values())
    for row in case.get("given") or []:
        values = [text(v) for v in row] + [None] * (len(columns) - len(row))
        sql(f"INSERT INTO given VALUES ({casts})", values)

    engine = engine_for(project)
    rules = project.rules()
    deploy_rules(engine, rules)
    [result] = engine.backfill(rules)
    assert result.status == "ok", result.message

    def instant(value: Any) -> Any:
        return None if value is None else sql("SELECT %s::timestamptz", [str(value)])[0][0]

    grants = sql("SELECT user_id::text, level, scope, achieved_at FROM plaudit.user_badge "
                 "ORDER BY 1, achieved_at, 2, 3")
    expected = sorted(
        ((text(u), lv, text(s), instant(at)) for u, lv, s, at in case.get("grants") or []),
        key=lambda g: (g[0], g[3], g[1], g[2]),
    )
    assert grants == expected

    progress = sql("SELECT user_id::text, scope, value, next_level, expires_at "
                   "FROM plaudit.user_progress ORDER BY 1, 2")
    if "progress" in case:
        wanted = case["progress"] or []
        got = [(u, s, number(v), n, e) if len(w) > 4 else (u, s, number(v), n)
               for (u, s, v, n, e), w in zip(progress, wanted, strict=False)]
        assert len(progress) == len(wanted)
        assert got == [
            (text(w[0]), text(w[1]), number(w[2]), w[3], *([instant(w[4])] if len(w) > 4 else []))
            for w in wanted
        ]


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
