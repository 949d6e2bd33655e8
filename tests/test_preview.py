"""`plaudit preview`: per level what a backfill would add and what exists, a sample, the plan;
and nothing written."""

from __future__ import annotations

import re

TALKER = """
    slug: talker
    name: Talker
    kind: count
    triggers: [comment_created]
    params:
      post_id: {type: bigint}
    levels:
      - {key: bronze, name: Chatty, threshold: 2, points: 5}
      - {key: silver, name: Talkative, threshold: 3, points: 10}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
        AND {{ filter('c.post_id', 'post_id') }}
"""

SEED = """
INSERT INTO users (id, name, created_at) VALUES
    (1, 'a', '2024-01-01'), (2, 'b', '2024-01-01'), (3, 'c', '2024-01-01');
INSERT INTO posts (id, author_id, kind, title, created_at) VALUES
    (1, 1, 'article', 't', '2024-01-01'), (2, 1, 'article', 'u', '2024-01-01');
INSERT INTO comments (post_id, author_id, body, created_at) VALUES
    (1, 1, 'x', '2024-02-01 10:00+00'), (1, 1, 'x', '2024-02-02 10:00+00'),
    (2, 1, 'x', '2024-02-03 10:00+00'),
    (1, 2, 'x', '2024-03-01 10:00+00'), (2, 2, 'x', '2024-03-05 10:00+00'),
    (1, 3, 'x', '2024-04-01 10:00+00');
"""

# everything preview could conceivably touch: plaudit's tables and the app's
TABLES = (
    "plaudit.badge",
    "plaudit.badge_level",
    "plaudit.compiled_rule",
    "plaudit.user_badge",
    "plaudit.user_progress",
    "plaudit.run",
    "plaudit.event",
    "public.users",
    "public.posts",
    "public.comments",
)


def snapshot(sql):
    return {
        table: sorted(map(repr, sql(f"SELECT t.*::text FROM {table} AS t"))) for table in TABLES
    }


def test_preview_counts_samples_and_plans_and_writes_nothing(run_cli, project, sql):
    project.write("rules/talker.yaml", TALKER)
    for statement in SEED.strip().split(";\n"):
        sql(statement)
    assert run_cli(project, "deploy").exit_code == 0
    # one grant exists already: user 2's bronze, from an earlier run
    sql(
        "INSERT INTO plaudit.user_badge (user_id, badge, level, achieved_at) "
        "VALUES (2, 'talker', 'bronze', '2024-03-05 10:00+00')"
    )
    before = snapshot(sql)
    result = run_cli(project, "preview", "talker", "--plan")
    assert result.exit_code == 0, result.output
    assert snapshot(sql) == before

    lines = result.stdout.splitlines()
    assert lines[:7] == [
        "Talker (talker): a backfill would add 2 grants",
        "",
        "level   name       threshold  would add  existing",
        "------  ---------  ---------  ---------  --------",
        "bronze  Chatty             2          1         1",
        "silver  Talkative          3          1         0",
        "",
    ]
    assert lines[7:12] == [
        "Sample of the new grants (2 of 2)",
        "user_id  level   scope  achieved_at               value",
        "-------  ------  -----  ------------------------  -----",
        "1        bronze         2024-02-02 10:00:00+0000      3",
        "1        silver         2024-02-03 10:00:00+0000      3",
    ]
    assert lines[13] == "Plan (backfill)"
    assert re.match(r"  \S", lines[14])


def test_preview_with_a_param_and_an_undeployed_rule(run_cli, project, sql):
    project.write("rules/talker.yaml", TALKER)
    for statement in SEED.strip().split(";\n"):
        sql(statement)
    before = snapshot(sql)
    result = run_cli(project, "preview", "talker", "--param", "post_id=1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Talker (talker): a backfill would add 1 grant"
    assert snapshot(sql) == before
    bad = run_cli(project, "preview", "talker", "--param", "post_id=x")
    assert (bad.exit_code, bad.stderr) == (
        2,
        "Error: invalid value for param 'post_id': 'x' is not a valid bigint\n",
    )


def test_preview_checks_the_contract_first(run_cli, project):
    project.write(
        "rules/talker.yaml",
        TALKER.replace("c.created_at AS occurred_at", "c.body AS occurred_at"),
    )
    result = run_cli(project, "preview", "talker")
    assert result.exit_code == 1
    assert result.stderr == (
        "rules/talker.yaml:11: talker: column occurred_at is text; a count query needs a "
        "timestamptz (timestamp and date also work)\n"
        "Error: 1 problem in rule files\n"
    )


def test_a_query_that_tries_to_write_is_stopped_by_the_read_only_transaction(
    run_cli, project, sql
):
    # nextval() writes: the read-only transaction refuses it, so nothing changes (the deny list
    # refuses it before anything runs, unless a site allows it: then this is what holds)
    project.write("plaudit.yaml", "allow_functions: [nextval]\n")
    project.write(
        "rules/sneaky.yaml",
        """
        slug: sneaky
        name: Sneaky
        kind: award
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at
          FROM users AS u
          WHERE nextval('users_id_seq') > 0
        """,
    )
    sql("INSERT INTO users (id, name, created_at) VALUES (1, 'a', '2024-01-01')")
    before = sql("SELECT last_value FROM users_id_seq")
    result = run_cli(project, "preview", "sneaky")
    assert result.exit_code == 1  # the rule failed, at its file and line
    assert result.stderr.startswith(
        "rules/sneaky.yaml:5: cannot execute nextval() in a read-only transaction")
    assert sql("SELECT last_value FROM users_id_seq") == before


def test_preview_and_a_dry_run_leave_out_a_revoked_grant(run_cli, project, sql):
    """A revoked grant is never granted again (suppressed_grant): preview must not count it
    as a grant a backfill would add, just as a dry run does not."""
    project.write("rules/talker.yaml", TALKER)
    for statement in SEED.strip().split(";\n"):
        sql(statement)
    assert run_cli(project, "deploy").exit_code == 0
    assert run_cli(project, "backfill").exit_code == 0
    revoked = run_cli(project, "revoke", "talker", "1", "--level", "silver", "--reason", "spam")
    assert revoked.exit_code == 0, revoked.output
    result = run_cli(project, "preview", "talker")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Talker (talker): a backfill would add 0 grants"
    dry = run_cli(project, "backfill", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert '"granted": 0' in dry.stdout
