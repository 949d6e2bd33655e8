"""Composite rules: badge('slug') references, run order, cycles, same-batch re-checks."""

from __future__ import annotations

import pytest

from plaudit.errors import RuleError
from plaudit.model.dependencies import check, event_types, references
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Event
from plaudit.sqlgen.render import modes

COMMENTATOR = """
    slug: commentator
    name: Commentator
    kind: count
    triggers: [comment_created]
    levels:
      - {key: bronze, name: Chatty, threshold: 2}
      - {key: silver, name: Commentator, threshold: 3}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
"""

# "a_fan" sorts before "commentator": only dependency order makes it run second
FAN = """
    slug: a_fan
    name: Fan
    kind: award
    triggers: [comment_created]
    query: |
      -- bronze in commentator, a day later
      SELECT b.user_id, b.achieved_at + interval '1 day' AS achieved_at
      FROM {{ badge('commentator') }} AS b
      WHERE b.level = 'bronze' AND {{ affected('b.user_id') }}
"""

# a composite of a composite, with an OR: silver in commentator, or the fan badge
SUPERFAN = """
    slug: superfan
    name: Superfan
    kind: award
    triggers: [comment_created]
    query: |
      SELECT g.user_id, min(g.achieved_at) AS achieved_at
      FROM (
          SELECT b.user_id, b.achieved_at FROM {{ badge('commentator') }} AS b
          WHERE b.level = 'silver'
          UNION ALL
          SELECT f.user_id, f.achieved_at + interval '1 hour' FROM {{ badge('a_fan') }} AS f
      ) AS g
      WHERE {{ affected('g.user_id') }}
      GROUP BY g.user_id
"""


def seed_comments(sql, author, days):
    sql("INSERT INTO users (id, name, created_at) VALUES (%s, 'u', '2020-01-01') "
        "ON CONFLICT DO NOTHING", [author])
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, %s, 'article', 'hello', '2020-01-01') ON CONFLICT DO NOTHING", [author])
    for day in days:
        sql("INSERT INTO comments (post_id, author_id, body, created_at) "
            "VALUES (1, %s, 'x', %s)", [author, f"2024-01-{day:02d} 12:00+00"])


def grants(sql):
    return sql("SELECT user_id, badge, level, achieved_at::text FROM plaudit.user_badge "
               "ORDER BY 1, 2, 3")


@pytest.fixture
def composite(project, engine_for):
    project.write("rules/commentator.yaml", COMMENTATOR)
    project.write("rules/a_fan.yaml", FAN)
    project.write("rules/superfan.yaml", SUPERFAN)
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    return project, engine


def test_references_are_read_from_the_template(composite):
    project, _ = composite
    rules = {r.slug: r for r in project.rules()}
    assert references(rules["superfan"]) == {"commentator": 8, "a_fan": 11}
    assert references(rules["commentator"]) == {}


def test_backfill_runs_dependencies_first(composite, sql):
    project, engine = composite
    seed_comments(sql, 7, [1, 2, 3])
    results = engine.backfill(project.rules())
    assert [(r.slug, r.granted) for r in results] == [
        ("commentator", 2), ("a_fan", 1), ("superfan", 1)]
    assert grants(sql) == [
        (7, "a_fan", "default", "2024-01-03 12:00:00+00"),
        (7, "commentator", "bronze", "2024-01-02 12:00:00+00"),
        (7, "commentator", "silver", "2024-01-03 12:00:00+00"),
        # the OR: commentator silver (Jan 3 12:00) is earlier than a_fan + 1 hour
        (7, "superfan", "default", "2024-01-03 12:00:00+00"),
    ]


def test_a_grant_in_a_batch_re_checks_its_dependents_in_the_same_batch(composite, sql):
    _, engine = composite
    seed_comments(sql, 7, [1, 2])
    added = engine.check([Event("comment_created", 7)])
    assert [(g["badge"], g["level"]) for g in added] == [
        ("commentator", "bronze"), ("a_fan", "default"), ("superfan", "default")]
    assert sql("SELECT slug, depth FROM plaudit.badge_run_order ORDER BY 2, 1") == [
        ("commentator", 0), ("a_fan", 1), ("superfan", 2)]


def test_the_engine_runs_rules_in_the_databases_one_order(composite):
    project, engine = composite
    rules = {r.slug: r for r in project.rules()}
    given = [rules["superfan"], rules["a_fan"], rules["commentator"]]
    assert [r.slug for r in engine.run_order(given)] == ["commentator", "a_fan", "superfan"]
    assert [r.slug for r in engine.run_order([rules["superfan"]])] == ["superfan"]


CYCLE_X = """
    slug: x
    name: X
    kind: award
    query: |
      SELECT b.user_id, b.achieved_at
      FROM {{ badge('y') }} AS b
"""
CYCLE_Y = """
    slug: y
    name: Y
    kind: award
    query: |
      SELECT b.user_id, b.achieved_at
      FROM {{ badge('z') }} AS b
      UNION ALL
      SELECT b.user_id, b.achieved_at FROM {{ badge('x') }} AS b
"""
CYCLE_Z = """
    slug: z
    name: Z
    kind: award
    query: |
      SELECT b.user_id, b.achieved_at FROM {{ badge('z') }} AS b
"""


def test_a_cycle_is_a_validation_error_naming_the_rules(project, run_cli):
    project.write("rules/x.yaml", CYCLE_X)
    project.write("rules/y.yaml", CYCLE_Y)
    project.write("rules/z.yaml", CYCLE_Z)
    with pytest.raises(RuleError) as err:
        check(project.rules())
    assert [str(p) for p in err.value.problems] == [
        "rules/x.yaml:6: x: dependency cycle: x -> y -> x",
        "rules/y.yaml:8: y: dependency cycle: x -> y -> x",
        "rules/z.yaml:5: z: dependency cycle: z -> z",
    ]
    result = run_cli(project, "deploy")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "rules/x.yaml:6: x: dependency cycle: x -> y -> x\n"
        "rules/y.yaml:8: y: dependency cycle: x -> y -> x\n"
        "rules/z.yaml:5: z: dependency cycle: z -> z\n"
        "Error: 3 problems in rule files\n")


def test_unknown_and_non_literal_references(project):
    project.write("rules/commentator.yaml", COMMENTATOR)
    project.write("rules/odd.yaml", """
        slug: odd
        name: Odd
        kind: award
        triggers: [post_created]
        query: |
          {% set which = 'commentator' %}
          SELECT b.user_id, b.achieved_at FROM {{ badge(which) }} AS b
          UNION ALL
          SELECT b.user_id, b.achieved_at FROM {{ badge('nope') }} AS b
          UNION ALL
          SELECT b.user_id, b.achieved_at FROM {{ badge('commentator') }} AS b
    """)
    with pytest.raises(RuleError) as err:
        check(project.rules())
    assert [str(p) for p in err.value.problems] == [
        "rules/odd.yaml:7: odd: badge() takes one literal slug, like badge('commentator')",
        "rules/odd.yaml:9: odd: badge('nope') references no rule in the rule set",
    ]


def test_a_composite_is_triggered_by_the_grants_it_reads(project):
    project.write("rules/commentator.yaml", COMMENTATOR)
    project.write("rules/later.yaml", FAN.replace("a_fan", "later").replace(
        "triggers: [comment_created]", "triggers: []"))
    check(project.rules())
    rules = {r.slug: r for r in project.rules()}
    assert event_types(rules["later"]) == ("badge:commentator",)
    assert modes(rules["later"]) == ("backfill", "incremental")
    assert event_types(rules["commentator"]) == ("comment_created",)


def test_badge_renders_the_grants_of_the_configured_schema(project, engine_for, sql):
    project.write("plaudit.yaml", "schema: badges\n")
    project.write("rules/commentator.yaml", COMMENTATOR)
    project.write("rules/a_fan.yaml", FAN)
    engine = engine_for(project)
    engine.init()
    deploy_rules(engine, project.rules())
    seed_comments(sql, 7, [1, 2])
    engine.backfill(project.rules())
    assert sql("SELECT badge, achieved_at::text FROM badges.user_badge ORDER BY 1") == [
        ("a_fan", "2024-01-03 12:00:00+00"), ("commentator", "2024-01-02 12:00:00+00")]
