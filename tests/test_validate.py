"""`plaudit validate`: every problem of every rule file in one run, each at its file:line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from plaudit.cli import cli

OFFLINE = "postgresql://nobody@127.0.0.1:1/none"  # validate never connects


def validate(project, *args):
    return CliRunner().invoke(
        cli, ["--dsn", OFFLINE, "--project", str(project.path), "validate", *args]
    )


def test_the_bundled_rules_are_valid(demo_project):
    result = validate(demo_project)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    count = len(list((demo_project.path / "rules").glob("*.yaml"))) - len(
        list((demo_project.path / "rules").glob("*.test.yaml"))
    )
    assert result.stderr == f"{count} rules: ok\n"


def test_every_problem_of_every_file_is_reported_at_its_line(project):
    project.write(
        "rules/chatty.yaml",
        """
        slug: chatty
        name: Chatty
        kind: count
        triggers: [comment_created]
        params:
          challenge_id: {type: bigint}
          since: {type: date}
        levels:
          - {key: bronze, name: Bronze, threshold: 3}
        query: |
          SELECT c.author_id AS user_id, c.created_at AS occurred_at
          FROM comments AS c
          JOIN {{ batch }} AS b ON b.user_id = c.author_id
          WHERE {{ filter('c.post_id', 'challenge') }}
            AND c.body <> {{ nope }}
            AND c.created_at >= {{ param('since') }}
        """,
    )
    project.write(
        "rules/broken.yaml",
        """
        slug: broken
        name: Broken
        kind: award
        colour: red
        query: SELECT 1 AS user_id, now() AS achieved_at
        """,
    )
    project.write(
        "rules/late.yaml",
        """
        slug: late
        name: Late
        kind: award
        triggers: [post_created]
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
          WHERE {{ affected('p.author_id') }}
          {% if is_incremental() %}
            AND p.id > 0 AND
          {% endif %}
            AND p.title <> ''
        """,
    )
    result = validate(project)
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/broken.yaml:4: unknown key 'colour'\n"
        "rules/chatty.yaml:6: param 'challenge_id' is declared but the query never uses it\n"
        "rules/chatty.yaml:13: `batch` is only defined in incremental mode; "
        "use it inside {% if is_incremental() %}\n"
        "rules/chatty.yaml:14: unknown param 'challenge' (declared: challenge_id, since)\n"
        "rules/chatty.yaml:15: 'nope' is undefined\n"
        'rules/late.yaml:12: SQL syntax error: syntax error at or near "AND" (incremental mode)\n'
    )
    assert result.stderr == "Error: 6 problems in rule files\n"


def test_lines_inside_the_query_block_survive_dropped_branches(project):
    # the {% if %} block renders to nothing in backfill mode: the error is still on line 12
    project.write(
        "rules/shifted.yaml",
        """
        slug: shifted
        name: Shifted
        kind: award
        triggers: [post_created]
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
          WHERE {{ affected('p.author_id') }}
          {% if is_incremental() %}
            AND p.id > 0
          {% endif %}
            AND AND p.title <> ''
        """,
    )
    result = validate(project)
    assert result.stdout == 'rules/shifted.yaml:12: SQL syntax error: syntax error at or near "AND"\n'


def test_single_select_kind_columns_and_template_syntax(project):
    project.write(
        "rules/deleter.yaml",
        """
        slug: deleter
        name: Deleter
        kind: award
        query: |
          DELETE FROM comments
        """,
    )
    project.write(
        "rules/nocol.yaml",
        """
        slug: nocol
        name: No column
        kind: count
        levels:
          - {key: bronze, name: Bronze, threshold: 3}
        query: |
          SELECT c.author_id AS user_id
          FROM comments AS c
        """,
    )
    project.write(
        "rules/unclosed.yaml",
        """
        slug: unclosed
        name: Unclosed
        kind: award
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
          {% if mode == 'backfill' %}
          WHERE {{ param( }}
        """,
    )
    result = validate(project)
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/deleter.yaml:5: query must be a SELECT, found DELETE\n"
        "rules/nocol.yaml:7: a count query must return user_id, occurred_at; "
        "missing column occurred_at\n"
        "rules/unclosed.yaml:8: template error: unexpected '}', expected ')'\n"
    )


def test_helpers_in_the_wrong_mode(project):
    project.write(
        "rules/nobatch.yaml",
        """
        slug: nobatch
        name: No batch
        kind: award
        triggers: []
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
          {% if is_incremental() %}
          JOIN {{ batch }} AS b ON b.user_id = p.author_id
          {% endif %}
        """,
    )
    project.write(
        "rules/unbounded.yaml",
        """
        slug: unbounded
        name: Unbounded
        kind: award
        triggers: [post_created]
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
          {% if not is_incremental() %}
          WHERE p.id IN (SELECT b.user_id FROM {{ batch }} AS b)
          {% endif %}
        """,
    )
    result = validate(project)
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/nobatch.yaml:8: `is_incremental` is used, but the rule has no triggers: "
        "it never runs in incremental mode\n"
        "rules/nobatch.yaml:9: `batch` is used, but the rule has no triggers: "
        "it never runs in incremental mode\n"
        "rules/unbounded.yaml:9: `batch` is only defined in incremental mode; "
        "use it inside {% if is_incremental() %}\n"
    )


def test_a_rule_with_triggers_must_restrict_incremental_runs(project):
    project.write(
        "rules/everyone.yaml",
        """
        slug: everyone
        name: Everyone
        kind: award
        triggers: [post_created]
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
        """,
    )
    result = validate(project)
    assert result.stdout == (
        "rules/everyone.yaml:6: the rule has triggers, but its query uses neither affected() "
        "nor batch: every incremental run would re-check all users\n"
    )


def test_unknown_badge_references_and_cycles(project):
    rule = """
        slug: {slug}
        name: {slug}
        kind: award
        query: |
          SELECT g.user_id, g.achieved_at
          FROM {{{{ badge('{ref}') }}}} AS g
        """
    project.write("rules/egg.yaml", rule.format(slug="egg", ref="hen"))
    project.write("rules/hen.yaml", rule.format(slug="hen", ref="egg"))
    project.write("rules/orphan.yaml", rule.format(slug="orphan", ref="nobody"))
    result = validate(project)
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/egg.yaml:6: dependency cycle: egg -> hen -> egg\n"
        "rules/hen.yaml:6: dependency cycle: egg -> hen -> egg\n"
        "rules/orphan.yaml:6: badge('nobody') references no rule in the rule set\n"
    )


@pytest.mark.parametrize("suffix", ["yaml", "yml"])
def test_test_cases_are_validated_too(project, suffix):
    project.write(
        f"rules/poster.{suffix}",
        """
        slug: poster
        name: Poster
        kind: award
        query: SELECT p.author_id AS user_id, p.created_at AS achieved_at FROM posts AS p
        """,
    )
    project.write(
        f"rules/poster.test.{suffix}",
        """
        tests:
          first:
            given: {posts: [{author_id: 1, created_at: 2024-01-01 10:00}]}
            expect:
              - {user_id: 1, level: gold, achieved_at: 2024-01-01 10:00}
        """,
    )
    result = validate(project)
    assert result.exit_code == 1
    assert result.stdout == (
        f"rules/poster.test.{suffix}:5: unknown level 'gold' (expected one of default)\n"
    )


def test_a_missing_rules_folder_is_an_error(tmp_path):
    (tmp_path / "plaudit.yaml").write_text("rules: badges\n")
    result = CliRunner().invoke(cli, ["--dsn", OFFLINE, "--project", str(tmp_path), "validate"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Error: the rules folder badges/ does not exist (plaudit.yaml's `rules:` names it; "
        "the default is rules/)\n"
    )
