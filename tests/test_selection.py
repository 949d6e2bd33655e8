"""Selectors: slugs, tag:, kind:, state:dirty and globs, repeatable --select and --exclude."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from plaudit.cli import cli
from plaudit.errors import ConfigError
from plaudit.model.selection import select

AWARD = """
    slug: {slug}
    name: {slug}
    kind: award
    tags: [{tags}]
    query: |
      SELECT p.author_id AS user_id, p.created_at AS achieved_at FROM posts AS p
"""

COUNT = """
    slug: {slug}
    name: {slug}
    kind: count
    tags: [{tags}]
    levels:
      - {{key: bronze, name: Bronze, threshold: 2}}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at FROM comments AS c
"""


@pytest.fixture
def rules(project):
    project.write("rules/first_post.yaml", AWARD.format(slug="first_post", tags="onboarding"))
    project.write("rules/first_comment.yaml", AWARD.format(slug="first_comment", tags="community"))
    project.write("rules/commentator.yaml", COUNT.format(slug="commentator", tags="community"))
    project.write("rules/reader.yaml", COUNT.format(slug="reader", tags="reading, community"))
    return project


def slugs(selected):
    return [rule.slug for rule in selected]


@pytest.mark.parametrize(
    "patterns, exclude, expected",
    [
        ((), (), ["commentator", "first_comment", "first_post", "reader"]),
        (("reader",), (), ["reader"]),
        (("first_*",), (), ["first_comment", "first_post"]),
        (("tag:community",), (), ["commentator", "first_comment", "reader"]),
        (("tag:read*",), (), ["reader"]),
        (("kind:count",), (), ["commentator", "reader"]),
        (("kind:award", "reader"), (), ["first_comment", "first_post", "reader"]),
        (("tag:community",), ("kind:count",), ["first_comment"]),
        ((), ("first_*", "reader"), ["commentator"]),
        (("state:dirty",), (), ["first_post"]),
        (("kind:award",), ("state:dirty",), ["first_comment"]),
    ],
)
def test_selectors(rules, patterns, exclude, expected):
    selected = select(rules.rules(), patterns, dirty=["first_post"], exclude=exclude)
    assert slugs(selected) == expected


@pytest.mark.parametrize(
    "patterns, exclude, message",
    [
        (("kind:streak",), (), "--select 'kind:streak' matches no rule"),
        ((), ("tag:nope",), "--exclude 'tag:nope' matches no rule"),
        ((), ("state:stale",), "--exclude 'state:stale': unknown state (known: state:dirty, state:due)"),
    ],
)
def test_a_selector_matching_nothing_is_an_error(rules, patterns, exclude, message):
    with pytest.raises(ConfigError) as err:
        select(rules.rules(), patterns, exclude=exclude)
    assert str(err.value) == message


def test_commands_take_select_and_exclude(rules):
    rules.write(".sqlfluff", "[sqlfluff]\nrules = CP01\n")
    result = CliRunner().invoke(
        cli,
        ["--project", str(rules.path), "lint", "-s", "tag:community", "-s", "first_post",
         "--exclude", "kind:count"],
    )  # fmt: skip
    assert (result.exit_code, result.stderr) == (0, "2 rules: no lint violations\n")
    result = CliRunner().invoke(
        cli, ["--project", str(rules.path), "lint", "--exclude", "tag:nothing"]
    )
    assert (result.exit_code, result.stderr) == (
        2,
        "Error: --exclude 'tag:nothing' matches no rule\n",
    )


def test_state_dirty_comes_from_the_database(rules, run_cli, sql):
    assert run_cli(rules, "deploy").exit_code == 0
    sql("UPDATE plaudit.badge SET dirty = true WHERE slug IN ('reader', 'first_post')")
    result = run_cli(rules, "-v", "deploy", "--select", "state:dirty", "--exclude", "kind:award")
    assert (result.exit_code, result.stdout) == (0, "reader: unchanged\n")
    result = run_cli(rules, "-v", "deploy", "--select", "kind:award", "--exclude", "state:dirty")
    assert result.stdout == "first_comment: unchanged\n"


COMPOSITE = """
    slug: {slug}
    name: {slug}
    kind: award
    query: |
      SELECT b.user_id, b.achieved_at FROM {{{{ badge('{reads}') }}}} AS b
"""


@pytest.mark.parametrize("patterns, exclude, expected", [
    (("tag:community,kind:count",), (), ["commentator", "reader"]),
    (("tag:community,first_*",), (), ["first_comment"]),
    (("+super_fan",), (), ["commentator", "fan", "super_fan"]),
    (("fan+",), (), ["fan", "super_fan"]),
    (("commentator+",), (), ["commentator", "fan", "super_fan"]),
    (("+fan+",), (), ["commentator", "fan", "super_fan"]),
    (("+super_fan,kind:count",), (), ["commentator"]),
    (("commentator+",), ("super_fan",), ["commentator", "fan"]),
])
def test_graph_operators_and_intersections(rules, patterns, exclude, expected):
    """dbt's operators on the badge() references: +slug adds the rules it reads (upstream),
    slug+ the rules reading it (downstream); a comma intersects."""
    rules.write("rules/fan.yaml", COMPOSITE.format(slug="fan", reads="commentator"))
    rules.write("rules/super_fan.yaml", COMPOSITE.format(slug="super_fan", reads="fan"))
    assert slugs(select(rules.rules(), patterns, exclude=exclude)) == expected


@pytest.mark.parametrize("pattern, message", [
    ("tag:community,kind:streak", "--select 'tag:community,kind:streak' matches no rule"),
    ("+nobody", "--select '+nobody' matches no rule"),
    ("reader,", "--select 'reader,': an empty selector"),
])
def test_a_graph_or_intersection_part_matching_nothing_is_an_error(rules, pattern, message):
    with pytest.raises(ConfigError) as err:
        select(rules.rules(), [pattern])
    assert str(err.value) == message
