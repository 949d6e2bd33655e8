"""`--json` wherever a script would want it: each command's output parses, and carries the
fields docs/cli-json.md documents."""

from __future__ import annotations

import json

TALKER = """
    slug: talker
    name: Talker
    kind: count
    triggers: [comment_created]
    levels:
      - {key: bronze, name: Chatty, threshold: 2}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
    tests:
      second_comment_earns_bronze:
        given:
          comments:
            - {author_id: 1, created_at: 2024-01-01 10:00}
            - {author_id: 1, created_at: 2024-01-02 10:00}
        expect:
          - {user_id: 1, level: bronze, achieved_at: 2024-01-02 10:00}
"""


def _seed(sql):
    sql("INSERT INTO users (id, name, created_at) VALUES (1, 'a', '2024-01-01')")
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 1, 'article', 't', '2024-01-01')")
    sql("INSERT INTO comments (post_id, author_id, body, created_at) VALUES "
        "(1, 1, 'x', '2024-02-01 10:00+00'), (1, 1, 'y', '2024-02-02 10:00+00')")


def test_every_scripted_command_speaks_json(run_cli, project, sql):
    project.write("rules/talker.yaml", TALKER)
    _seed(sql)

    validate = run_cli(project, "validate", "--db", "--json")
    assert (validate.exit_code, json.loads(validate.stdout)) == (0, [])

    lint = run_cli(project, "lint", "--json")
    assert isinstance(json.loads(lint.stdout), list)

    deploy = run_cli(project, "deploy", "--json")
    assert deploy.exit_code == 0, deploy.output
    assert json.loads(deploy.stdout) == {
        "dry_run": False, "rules": [{"slug": "talker", "status": "created", "notes": []}],
        "triggers": [], "due": {"new": ["talker"]}}

    preview = run_cli(project, "preview", "talker", "--json")
    shown = json.loads(preview.stdout)
    assert (shown["rule"], shown["would_add"], shown["total"]) == ("talker", {"bronze": 1}, 1)
    assert shown["sample"][0]["user_id"] == "1" and shown["plan"]

    tested = run_cli(project, "test", "--json")
    assert tested.exit_code == 0, tested.output
    assert [(o["case"], o["mode"], o["passed"]) for o in json.loads(tested.stdout)] == [
        ("talker_second_comment_earns_bronze", "backfill", True),
        ("talker_second_comment_earns_bronze", "incremental", True)]

    assert run_cli(project, "backfill").exit_code == 0
    user = json.loads(run_cli(project, "user", "1", "--json").stdout)
    assert user["user_id"] == "1" and user["points"] == 0
    [grant] = user["grants"]
    assert (grant["badge"], grant["level"]) == ("talker", "bronze")
    assert grant["achieved_at"] == "2024-02-02T10:00:00+00:00"

    status = json.loads(run_cli(project, "status", "--json").stdout)
    assert status["outbox"] == {  # no webhooks: an empty outbox
        "pending": 0, "oldest_pending_seconds": None, "dead": 0, "webhooks": []}


def test_problems_as_json_carry_file_and_line(run_cli, project):
    project.write("rules/talker.yaml", TALKER.replace("threshold: 2", "threshold: -2"))
    result = run_cli(project, "validate", "--json")
    assert result.exit_code == 1
    [problem] = json.loads(result.stdout)
    assert (problem["file"], problem["line"]) == ("rules/talker.yaml", 6)
    assert "threshold" in problem["message"]
