"""Leaderboards (issue 14, first part): standard competition ranking, ties listed by who
reached the value first, periods in the configured timezone, a badge's highest level."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from plaudit.errors import ConfigError
from plaudit.model.config import load_config
from plaudit.runtime.deploy import deploy_rules

BADGES = {
    "helper": """
        slug: helper
        name: Helper
        kind: award
        levels:
          - {key: bronze, name: Bronze, points: 10}
          - {key: silver, name: Silver, points: 30}
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at, 'bronze' AS level
          FROM users AS u WHERE false
    """,
    "writer": """
        slug: writer
        name: Writer
        kind: award
        levels:
          - {key: default, name: Writer, points: 5}
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at FROM users AS u WHERE false
    """,
}
BERLIN = ZoneInfo("Europe/Berlin")
# (user, badge, level, achieved at, Berlin time)
GRANTS = [
    (1, "helper", "bronze", "2024-03-04 09:00"),  # Monday of ISO week 10
    (1, "writer", "default", "2024-03-05 09:00"),
    (2, "helper", "silver", "2024-03-06 09:00"),
    (3, "helper", "bronze", "2024-03-07 09:00"),
    (3, "writer", "default", "2024-03-08 09:00"),  # 3 reaches 15 points after 1 did
    (4, "writer", "default", "2024-03-11 00:30"),  # Monday of week 11, in Berlin (Sunday UTC)
]


@pytest.fixture
def ranked(project, engine_for):
    project.write("plaudit.yaml", "timezone: Europe/Berlin\n")
    for slug, text in BADGES.items():
        project.write(f"rules/{slug}.yaml", text)
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    for user, badge, level, at in GRANTS:
        moment = datetime.fromisoformat(at).replace(tzinfo=BERLIN)
        engine.award(badge, user, "test", level=level, achieved_at=moment)
    return project, engine


def board(engine, **options):
    return [(r["rank"], r["user_id"], int(r["value"])) for r in engine.leaderboard(**options)]


@pytest.mark.parametrize("options, expected", [
    # points: 2 has 30; 1 and 3 have 15 each (1 reached it first); 4 has 5
    ({}, [(1, 2, 30), (2, 1, 15), (2, 3, 15), (4, 4, 5)]),
    ({"by": "badges"}, [(1, 1, 2), (1, 3, 2), (3, 2, 1), (3, 4, 1)]),
    # the highest level held of one badge: silver (2) before bronze (1)
    ({"by": "helper"}, [(1, 2, 2), (2, 1, 1), (2, 3, 1)]),
    # the ISO week of 2024-03-06 in Berlin: user 4's Monday 00:30 is the next week
    ({"period": "week", "at": datetime(2024, 3, 6, tzinfo=BERLIN)},
     [(1, 2, 30), (2, 1, 15), (2, 3, 15)]),
    ({"period": "week", "at": datetime(2024, 3, 11, 12, tzinfo=BERLIN)}, [(1, 4, 5)]),
    ({"period": "day", "at": datetime(2024, 3, 8, tzinfo=BERLIN)}, [(1, 3, 5)]),
    ({"limit": 2, "offset": 1}, [(2, 1, 15), (2, 3, 15)]),
])
def test_ranking(ranked, options, expected):
    _, engine = ranked
    assert board(engine, **options) == expected


def test_the_cli_prints_a_table_or_json(ranked, run_cli):
    project, _ = ranked
    text = run_cli(project, "leaderboard", "--limit", "2")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[2:] == [
        "   1        2     30  2024-03-06 09:00", "   2        1     15  2024-03-05 09:00"]
    rows = json.loads(run_cli(project, "leaderboard", "--by", "badges", "--json").stdout)
    assert rows[0] == {"rank": 1, "user_id": 1, "value": 2,
                       "reached_at": "2024-03-05T08:00:00+00:00"}


@pytest.mark.parametrize("args, says", [
    (["--by", "nobody"], "cannot rank by nobody: points, badges or a deployed badge's slug"),
    (["--at", "soon"], "Invalid value for --at"),
])
def test_bad_leaderboard_input_exits_2(ranked, run_cli, args, says):
    project, _ = ranked
    result = run_cli(project, "leaderboard", *args)
    assert result.exit_code == 2 and says in result.stderr


def test_a_users_place_with_its_neighbours(ranked, run_cli):
    project, engine = ranked
    place = engine.rank_of(3)
    assert (place["rank"], int(place["value"]), place["ranked"]) == (2, 15, 4)
    assert (place["above"], int(place["above_value"])) == (1, 15)
    assert (place["below"], int(place["below_value"])) == (4, 5)
    assert engine.rank_of(2)["above"] is None  # the leader has nobody above
    assert engine.rank_of(99) is None  # nothing earned: not ranked
    assert engine.rank_of(4, period="week", at=datetime(2024, 3, 6, tzinfo=BERLIN)) is None
    shown = run_cli(project, "user", "3")
    assert shown.stdout.splitlines()[-1] == (
        "Rank by points: #2 of 4 (above: user 1, 15; below: user 4, 5)")


GROUPS = """
timezone: Europe/Berlin
groups:
  classroom: |
    SELECT e.classroom_id AS group_id, e.student_id AS user_id
    FROM enrollments AS e
"""


@pytest.fixture
def grouped(ranked, sql):
    project, _ = ranked
    sql("CREATE TABLE enrollments (classroom_id int, student_id bigint)")
    sql("INSERT INTO enrollments VALUES (7, 1), (7, 3), (7, 4), (8, 2), (8, 99)")
    project.write("plaudit.yaml", GROUPS)
    return project


@pytest.mark.parametrize("options, expected", [
    # classroom 7 is users 1, 3 and 4, ranked among themselves
    ({"group": ("classroom", "7")}, [(1, 1, 15), (1, 3, 15), (3, 4, 5)]),
    ({"group": ("classroom", "8")}, [(1, 2, 30)]),  # 99 holds nothing: not ranked
    ({"group": ("classroom", "9")}, []),
    ({"group": ("classroom", "7"), "by": "badges"}, [(1, 1, 2), (1, 3, 2), (3, 4, 1)]),
    ({"group": ("classroom", "7"), "period": "week",
      "at": datetime(2024, 3, 6, tzinfo=BERLIN)}, [(1, 1, 15), (1, 3, 15)]),
    ({"group": ("classroom", "7"), "by": "helper"}, [(1, 1, 1), (1, 3, 1)]),
])
def test_group_boards(grouped, engine_for, options, expected):
    engine = engine_for(grouped)
    deploy_rules(engine, grouped.rules())
    assert board(engine, **options) == expected
    if expected:
        place = engine.rank_of(expected[-1][1], **options)
        assert (place["rank"], place["ranked"]) == (expected[-1][0], len(expected))


def test_group_on_the_command_line(grouped, run_cli):
    assert run_cli(grouped, "deploy").exit_code == 0
    result = run_cli(grouped, "leaderboard", "--group", "classroom:7", "--json")
    assert [r["user_id"] for r in json.loads(result.stdout)] == [1, 3, 4]
    for args, says in ((["--group", "classroom"], "is not NAME:KEY, like classroom:7"),
                       (["--group", "team:1"], "unknown group team"),
                       (["--group", "classroom:seven"], "invalid input syntax for type integer")):
        result = run_cli(grouped, "leaderboard", *args)
        assert result.exit_code == 2 and says in result.stderr, result.output


@pytest.mark.parametrize("query, line, says", [
    ("DELETE FROM enrollments", 3, "group 'classroom': query must be a SELECT, found DELETE"),
    ("SELECT 1 AS group_id, pg_sleep(1) AS user_id", 3,
     "group 'classroom': function pg_sleep() is not allowed in a rule query"),
    ("SELECT e.classroom_id AS group_id FROM enrollments AS e", 3,
     "group 'classroom': the query must return the columns group_id and user_id"),
    ("SELECT e.classroom_id AS group_id, 'x'::text AS user_id FROM enrollments AS e", 3,
     "group 'classroom': user_id is text; the configured user_id_type is bigint"),
])
def test_bad_groups_are_refused_at_their_line(grouped, run_cli, query, line, says):
    grouped.write("plaudit.yaml", f"groups:\n  classroom: |\n    {query}\n")
    result = run_cli(grouped, "deploy")
    assert result.exit_code == 1
    assert f"plaudit.yaml:{line}: {says}" in result.output


@pytest.mark.parametrize("text, says", [
    ("groups:\n  Class-Room: SELECT 1\n", "plaudit.yaml:2: group name 'Class-Room' must match"),
    ("groups:\n  classroom: ''\n", "plaudit.yaml:2: group 'classroom' must be a SELECT"),
    ("groups: [a]\n", "plaudit.yaml:1: 'groups' must be a mapping of name to a SELECT"),
])
def test_groups_in_plaudit_yaml_are_checked(project, text, says):
    project.write("plaudit.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(project.path)
    assert says in str(err.value)
