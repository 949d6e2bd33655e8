"""The command line: exit codes, exact messages, stdout for data and stderr for messages."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from plaudit.cli import cli

ROOT = Path(__file__).resolve().parents[1]
# The manual: README.md and docs/, without the reference generated from --help (docs/cli.md)
MANUAL = [ROOT / "README.md", *(p for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "cli.md")]


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands(cli)), ids=" ".join)
def test_every_command_has_help_and_is_in_the_manual(path):
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="plaudit")
    assert result.exit_code == 0
    assert f"Usage: plaudit {' '.join(path)}" in result.output
    command = cli
    for name in path:
        command = command.commands[name]
    assert command.help, f"{' '.join(path)} has no help text"
    manual = "".join(page.read_text(encoding="utf-8") for page in MANUAL)
    assert f"plaudit {' '.join(path)}" in manual, f"the manual (docs/) does not mention {path}"


def test_init_creates_the_schema_and_deploys(run_cli, demo_project):
    slugs = sorted(rule.slug for rule in demo_project.rules())
    assert {"commentator", "first_post", "top5_challenge"} <= set(slugs)
    result = run_cli(demo_project, "init")
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(f"{slug}: created\n" for slug in slugs)
    schema, deployed, due = result.stderr.splitlines()
    assert (schema, deployed) == (
        "schema plaudit is up to date",
        f"deployed {len(slugs)} rules ({len(slugs)} created, 0 changed)",
    )
    # new rules are due for a backfill, listed in run order (composites last)
    assert due.startswith(f"note: {len(slugs)} rules are due for a backfill (new: active_reader, ")
    assert ", word_collector, all_rounder): " in due
    again = run_cli(demo_project, "init")
    assert (again.exit_code, again.stdout) == (0, "")  # unchanged rules: named with -v only


def test_render_prints_the_sql_and_bound_values_offline(demo_project):
    result = CliRunner().invoke(
        cli,
        [
            "--dsn",
            "postgresql://nobody@127.0.0.1:1/none",
            "--project",
            str(demo_project.path),
            "render",
            "top5_challenge",
            "--param",
            "challenge_id=42",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "-- top5_challenge (award), backfill mode",
        "-- $1[1] = '42'  (challenge_id bigint)",
    ]
    assert "  AND (($1::text[])[1]::bigint IS NULL OR e.challenge_id = ($1::text[])[1]::bigint)" in lines


def test_render_rejects_a_badly_typed_param_with_exit_2(demo_project):
    result = CliRunner().invoke(
        cli,
        [
            "--project",
            str(demo_project.path),
            "render",
            "top5_challenge",
            "--param",
            "challenge_id=1; DROP TABLE users",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: invalid value for param 'challenge_id': "
        "'1; DROP TABLE users' is not a valid bigint\n"
    )


def test_render_unknown_rule_and_malformed_param(demo_project):
    runner = CliRunner()
    result = runner.invoke(cli, ["--project", str(demo_project.path), "render", "nope"])
    assert (result.exit_code, result.stderr) == (
        2,
        f"Error: no rule 'nope' in {demo_project.path / 'rules'}\n",
    )
    result = runner.invoke(
        cli, ["--project", str(demo_project.path), "render", "commentator", "--param", "oops"]
    )
    assert result.exit_code == 2
    assert "Error: Invalid value for --param: 'oops' is not of the form name=value" in result.stderr


def test_invalid_rule_files_are_all_reported_with_exit_1(project):
    project.write(
        "rules/a.yaml",
        "slug: a\nname: A\nkind: count\ncolour: red\nquery: SELECT 1\n"
        "levels:\n  - {key: x, name: X, threshold: 5}\n  - {key: y, name: Y, threshold: 5}\n",
    )
    project.write("rules/b.yaml", "slug: c\nname: B\nkind: tally\nquery: SELECT 1\n")
    result = CliRunner().invoke(cli, ["--project", str(project.path), "render", "a"])
    assert result.exit_code == 1
    assert result.stderr == (
        "rules/a.yaml:4: unknown key 'colour'\n"
        "rules/a.yaml:8: threshold 5 does not increase on the previous level's 5\n"
        "rules/b.yaml:1: slug 'c' does not match file name 'b.yaml'\n"
        "rules/b.yaml:3: unknown kind 'tally' (expected one of count, sum, streak, gauge, "
        "growth, award)\n"
        "Error: 4 problems in rule files\n"
    )


def test_backfill_summary_and_trophy_case(run_cli, demo_project, sql):
    sql("SELECT * FROM demo_generate(300, 20000)")
    assert run_cli(demo_project, "deploy").exit_code == 0
    result = run_cli(demo_project, "backfill")
    assert result.exit_code == 0, result.output
    counts = dict(
        ((b, lv), n)
        for b, lv, n in sql(
            "SELECT badge, level, count(*)::int FROM plaudit.user_badge GROUP BY 1, 2"
        )
    )
    header, rule, *rows = result.stdout.splitlines()
    assert header.split() == ["badge", "level", "name", "new", "total"]
    # every level of every rule, by slug then level
    assert [r.split()[:2] for r in rows] == [
        [rule.slug, level.key]
        for rule in sorted(demo_project.rules(), key=lambda r: r.slug)
        for level in rule.levels
    ]
    assert ["commentator", "gold"] in [r.split()[:2] for r in rows]
    for row in rows:
        badge, level, *_, new, total = row.split()
        assert (
            int(new.replace(",", ""))
            == int(total.replace(",", ""))
            == counts.get((badge, level), 0)
        )
    assert re.search(r"^  commentator +[\d,]+ granted  \d+\.\ds$", result.stderr, re.M)

    again = run_cli(demo_project, "backfill", "--select", "commentator")
    assert again.exit_code == 0
    assert [r.split()[-2] for r in again.stdout.splitlines()[2:]] == ["0", "0", "0"]

    user_id = sql(
        "SELECT user_id FROM plaudit.user_progress WHERE badge = 'commentator' "
        "AND next_level = 'silver' ORDER BY user_id LIMIT 1"
    )[0][0]
    value = sql("SELECT count(*) FROM comments WHERE author_id = %s", [user_id])[0][0]
    case = run_cli(demo_project, "user", str(user_id))
    assert case.exit_code == 0
    assert re.search(r"^  Commentator · Chatty +\d{4}-\d\d-\d\d \d\d:\d\d$", case.stdout, re.M)
    assert re.search(rf"^    \[#*-*\]  {value} / 100 to Commentator: ", case.stdout, re.M)


def test_backfill_one_challenge_with_a_param(run_cli, demo_project, sql):
    sql("SELECT * FROM demo_generate(300, 20000)")
    run_cli(demo_project, "deploy")
    result = run_cli(demo_project, "backfill", "--param", "challenge_id=3")
    assert result.exit_code == 0, result.output
    # the rules declaring the param: top 5 and the podium's medals; then the leaderboard
    # scores of the users they granted to, recomputed once for both rules
    lines = result.stderr.splitlines()
    assert [line.split()[0] for line in lines] == ["podium", "top5_challenge", "leaderboard"]
    users = sql("SELECT count(DISTINCT user_id) FROM plaudit.user_badge")[0][0]
    assert lines[2].split()[:5] == ["leaderboard", "scores", str(users), "users", "recomputed"]
    assert sql("SELECT DISTINCT badge, scope FROM plaudit.user_badge ORDER BY 1") == [
        ("podium", "3"), ("top5_challenge", "3")]
    assert sql("SELECT badge, count(*) FROM plaudit.user_badge GROUP BY 1 ORDER BY 1") == [
        ("podium", 3), ("top5_challenge", 5)]
    run_cli(demo_project, "backfill", "--param", "challenge_id=4")
    assert sql("SELECT scope, count(*) FROM plaudit.user_badge WHERE badge = 'top5_challenge' "
               "GROUP BY 1 ORDER BY 1") == [("3", 5), ("4", 5)]
    assert sql("SELECT scope, level FROM plaudit.user_badge WHERE badge = 'podium' "
               "ORDER BY 1, 2") == [("3", "bronze"), ("3", "gold"), ("3", "silver"),
                                    ("4", "bronze"), ("4", "gold"), ("4", "silver")]


def test_backfill_param_errors_exit_2_before_anything_runs(run_cli, demo_project, sql):
    run_cli(demo_project, "deploy")
    result = run_cli(demo_project, "backfill", "--param", "challenge_id=1; DROP TABLE users")
    assert (result.exit_code, result.stderr) == (
        2,
        (
            "Error: invalid value for param 'challenge_id': '1; DROP TABLE users' "
            "is not a valid bigint\n"
        ),
    )
    result = run_cli(demo_project, "backfill", "--param", "nope=1")
    assert (result.exit_code, result.stderr) == (2, "Error: no selected rule declares param nope\n")
    assert sql("SELECT count(*) FROM plaudit.run") == [(0,)]
    assert sql("SELECT to_regclass('public.users') IS NOT NULL") == [(True,)]


def test_a_text_param_with_quotes_and_percent_is_bound_harmlessly(run_cli, project, sql):
    project.write(
        "rules/titled.yaml",
        """
        slug: titled
        name: Titled
        kind: award
        params:
          title: {type: text}
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
          WHERE p.title LIKE '%' || {{ param('title') }} || '%'
    """,
    )
    sql(
        "INSERT INTO users (id, name, created_at) VALUES (1, 'a', '2020-01-01'), (2, 'b', '2020-01-01')"
    )
    sql(
        "INSERT INTO posts (author_id, kind, title, created_at) VALUES "
        "(1, 'article', 'Why O''Brien 100% rocks', '2024-01-01'), (2, 'article', 'Other', '2024-01-01')"
    )
    run_cli(project, "deploy")
    result = run_cli(project, "backfill", "--param", "title=O'Brien 100%")
    assert result.exit_code == 0, result.output
    assert sql("SELECT user_id FROM plaudit.user_badge") == [(1,)]
    assert sql("SELECT params FROM plaudit.run") == [({"title": "O'Brien 100%"},)]


def test_backfill_of_an_undeployed_change_is_refused(run_cli, demo_project):
    run_cli(demo_project, "deploy")
    path = demo_project.path / "rules" / "commentator.yaml"
    path.write_text(path.read_text().replace("threshold: 10,", "threshold: 20,"))
    result = run_cli(demo_project, "backfill")
    assert (result.exit_code, result.stderr) == (
        2,
        ("Error: rules changed since the last deploy: commentator; run `plaudit deploy` first\n"),
    )


def test_a_failing_rule_makes_backfill_exit_1(run_cli, project):
    project.write(
        "rules/broken.yaml",
        """
        slug: broken
        name: Broken
        kind: award
        query: |
          SELECT 1::bigint AS user_id, now() + (1 / 0) * interval '1 day' AS achieved_at
    """,
    )
    run_cli(project, "deploy")
    result = run_cli(project, "backfill")
    assert result.exit_code == 1
    assert re.fullmatch(
        r"  broken +failed: broken: division by zero \(SQLSTATE 22012\)  \d+\.\ds",
        result.stderr.splitlines()[0],
    )
    # where to look: the rule's query, at its file and line
    assert result.stderr.splitlines()[-2:] == [
        "rules/broken.yaml:5: broken: division by zero (SQLSTATE 22012)",
        "Error: 1 of 1 rules failed; they are marked for backfill",
    ]


def test_select_matching_nothing_is_an_error(run_cli, demo_project):
    result = run_cli(demo_project, "backfill", "--select", "tag:nope")
    assert (result.exit_code, result.stderr) == (2, "Error: --select 'tag:nope' matches no rule\n")


def test_connection_failure_exits_2(demo_project):
    result = CliRunner().invoke(
        cli,
        [
            "--dsn",
            "postgresql://postgres@127.0.0.1:1/none",
            "--project",
            str(demo_project.path),
            "init",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: cannot connect to postgresql://postgres@127.0.0.1:1/none: "
    )


def test_db_url_without_a_cluster_explains(project):
    result = CliRunner().invoke(cli, ["--project", str(project.path), "db", "url"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert str(project.path / ".plaudit") in result.stderr


def test_deploy_with_a_missing_rules_folder_removes_nothing(run_cli, demo_project, sql):
    assert run_cli(demo_project, "init").exit_code == 0
    badges = sql("SELECT count(*) FROM plaudit.badge")
    (demo_project.path / "plaudit.yaml").write_text("rules: ruels\n")  # a typo
    for command in ("deploy", "validate", "test", "backfill"):
        result = run_cli(demo_project, command)
        assert result.exit_code == 2, command
        assert result.stderr == (
            "Error: the rules folder ruels/ does not exist (plaudit.yaml's `rules:` names "
            "it; the default is rules/)\n"
        ), command
    assert sql("SELECT count(*) FROM plaudit.badge") == badges != [(0,)]
