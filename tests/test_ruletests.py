"""Rule tests as data: `plaudit test` runs given rows against expected grants, in both modes."""

from __future__ import annotations

import psycopg
import pytest

TALKER = """
    slug: talker
    name: Talker
    kind: count
    triggers: [comment_created]
    params:
      post_id: {type: bigint}
    levels:
      - {key: bronze, name: Chatty, threshold: 2}
      - {key: silver, name: Talkative, threshold: 3}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
        AND {{ filter('c.post_id', 'post_id') }}
    tests:
      second_comment_earns_bronze:
        given:
          comments:
            - {author_id: 1, post_id: 5, created_at: 2024-01-01 10:00}
            - {author_id: 1, post_id: 5, created_at: 2024-01-02 10:00}
            - {author_id: 2, post_id: 5, created_at: 2024-01-02 10:00}
        expect:
          - {user_id: 1, level: bronze, achieved_at: 2024-01-02 10:00}
      rows_from_a_select:
        given:
          comments: |
            SELECT 7 AS author_id, timestamptz '2024-01-01 00:00+00' + g * interval '1 day' AS created_at
            FROM generate_series(1, 4) AS g
        expect:
          - {user_id: 7, level: bronze, achieved_at: 2024-01-03 00:00}
          - {user_id: 7, level: silver, achieved_at: 2024-01-04 00:00}
      a_param_narrows_the_rows:
        params: {post_id: 5}
        given:
          comments:
            - {author_id: 1, post_id: 5, created_at: 2024-01-01 10:00}
            - {author_id: 1, post_id: 6, created_at: 2024-01-02 10:00}
        expect: []
"""


def test_passing_cases_and_the_summary_line(run_cli, project):
    project.write("rules/talker.yaml", TALKER)
    result = run_cli(project, "test")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "rules/talker.yaml:16: talker_second_comment_earns_bronze passed\n"
        "rules/talker.yaml:24: talker_rows_from_a_select passed\n"
        "rules/talker.yaml:32: talker_a_param_narrows_the_rows passed\n"
        "3 passed, 0 failed\n"
    )
    assert result.stderr == ""


def test_a_failing_case_shows_expected_and_actual_grants(run_cli, project, sql):
    project.write("rules/talker.yaml", TALKER)
    project.write(
        "rules/talker.test.yaml",
        """
        tests:
          off_by_an_hour:
            given:
              comments:
                - {author_id: 1, created_at: 2024-01-01 10:00}
                - {author_id: 1, created_at: 2024-01-02 10:00}
            expect:
              - {user_id: 1, level: bronze, achieved_at: 2024-01-02 11:00}
              - {user_id: 2, level: bronze, achieved_at: 2024-01-02 10:00}
        """,
    )
    result = run_cli(project, "test", "--select", "talker")
    assert result.exit_code == 1
    failure = (
        "rules/talker.test.yaml:2: talker_off_by_an_hour failed in {mode} mode\n"
        "  expected (2 grants):\n"
        "  - user_id=1 level=bronze scope='' achieved_at=2024-01-02 11:00:00+00:00\n"
        "  - user_id=2 level=bronze scope='' achieved_at=2024-01-02 10:00:00+00:00\n"
        "  actual (1 grant):\n"
        "  + user_id=1 level=bronze scope='' achieved_at=2024-01-02 10:00:00+00:00\n"
    )
    assert result.stdout.endswith(
        failure.format(mode="backfill") + failure.format(mode="incremental") + "3 passed, 1 failed\n"
    )
    # the scratch schema and the temporary tables are gone; nothing was written
    assert sql("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'plaudit_test_%'") == [(0,)]
    assert sql("SELECT count(*) FROM comments") == [(0,)]
    assert sql("SELECT count(*) FROM plaudit.badge") == [(0,)]


def test_progress_rows_are_checked_in_both_modes_when_a_case_gives_them(run_cli, project):
    project.write(
        "rules/talker.yaml",
        TALKER.split("    tests:")[0]
        + """
    tests:
      progress_of_every_user:
        given:
          comments:
            - {author_id: 1, created_at: 2024-01-01 10:00}
            - {author_id: 1, created_at: 2024-01-02 10:00}
            - {author_id: 1, created_at: 2024-01-03 10:00}
            - {author_id: 2, created_at: 2024-01-02 10:00}
        expect:
          - {user_id: 1, level: bronze, achieved_at: 2024-01-02 10:00}
          - {user_id: 1, level: silver, achieved_at: 2024-01-03 10:00}
        progress:
          - {user_id: 1, value: 3, next_level: null}
          - {user_id: 2, value: 1, next_level: bronze}
      progress_off_by_one:
        given:
          comments:
            - {author_id: 2, created_at: 2024-01-02 10:00}
        expect: []
        progress:
          - {user_id: 2, value: 2, next_level: bronze}
      no_rows_no_progress:
        given: {comments: []}
        expect: []
        progress: []
""",
    )
    result = run_cli(project, "test")
    assert result.exit_code == 1
    failure = (
        "rules/talker.yaml:30: talker_progress_off_by_one failed in {mode} mode\n"
        "  expected progress (1 row):\n"
        "  - user_id=2 scope='' value=2 next_level=bronze\n"
        "  actual progress (1 row):\n"
        "  + user_id=2 scope='' value=1 next_level=bronze\n"
    )
    assert result.stdout == (
        "rules/talker.yaml:17: talker_progress_of_every_user passed\n"
        + failure.format(mode="backfill") + failure.format(mode="incremental")
        + "rules/talker.yaml:37: talker_no_rows_no_progress passed\n"
        "2 passed, 1 failed\n"
    )


def test_invalid_progress_rows_are_reported_at_their_lines(run_cli, project):
    project.write(
        "rules/talker.yaml",
        TALKER.split("    tests:")[0]
        + """
    tests:
      bad_progress:
        expect: []
        progress:
          - {user_id: 1, value: 2}
          - {user_id: 3, value: two, next_level: gold, streak: 3}
          - {user_id: 2, scope: a, value: 1, next_level: bronze, expires_at: 5}
          - {user_id: 2, scope: a, value: 1, next_level: bronze}
          - 7
      not_a_list:
        expect: []
        progress: {user_id: 1}
""",
    )
    result = run_cli(project, "test")
    assert result.exit_code == 1
    assert result.stderr == (
        "rules/talker.yaml:20: missing required key 'next_level' (null once every level is "
        "reached)\n"
        "rules/talker.yaml:21: 'value' must be a number\n"
        "rules/talker.yaml:21: unknown key 'streak'\n"
        "rules/talker.yaml:21: unknown level 'gold' (expected one of bronze, silver, or null)\n"
        "rules/talker.yaml:22: 'expires_at' must be a timestamp\n"
        "rules/talker.yaml:23: a second progress row for user_id 2 and scope 'a'\n"
        "rules/talker.yaml:24: a progress row must be a mapping like {user_id: 1, value: 3, "
        "next_level: silver}\n"
        "rules/talker.yaml:27: 'progress' must be a list of progress rows\n"
        "Error: 8 problems in rule files\n"
    )


def test_incremental_cases_run_on_their_events(run_cli, project):
    project.write(
        "rules/popular.yaml",
        """
        slug: popular
        name: Popular
        kind: count
        triggers: [article_read]
        levels:
          - {key: read, name: Read, threshold: 2}
        query: |
          -- the author of a read article is re-checked, not the reader
          SELECT p.author_id AS user_id, r.read_at AS occurred_at
          FROM article_reads AS r
          JOIN posts AS p ON p.id = r.post_id
          {% if is_incremental() %}
          WHERE p.id IN (SELECT (b.payload ->> 'post_id')::bigint FROM {{ batch }} AS b)
          {% endif %}
        tests:
          read_twice:
            given:
              posts: [{id: 1, author_id: 9, created_at: 2024-01-01}]
              article_reads:
                - {post_id: 1, reader_id: 2, read_at: 2024-02-01 08:00}
                - {post_id: 1, reader_id: 3, read_at: 2024-02-01 09:00}
            events:
              - {type: article_read, user_id: 3, payload: {post_id: 1}}
            expect:
              - {user_id: 9, achieved_at: 2024-02-01 09:00}
          an_unrelated_event_grants_nothing:
            modes: [incremental]
            given:
              posts: [{id: 1, author_id: 9, created_at: 2024-01-01}]
              article_reads:
                - {post_id: 1, reader_id: 2, read_at: 2024-02-01 08:00}
                - {post_id: 1, reader_id: 3, read_at: 2024-02-01 09:00}
            events:
              - {type: article_read, user_id: 3, payload: {post_id: 2}}
            expect: []
        """,
    )
    result = run_cli(project, "test")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "2 passed, 0 failed"


def test_a_case_that_cannot_run_reports_the_error(run_cli, project):
    project.write(
        "rules/wrong.yaml",
        """
        slug: wrong
        name: Wrong
        kind: award
        query: |
          SELECT p.author_id AS user_id, p.created_at AS achieved_at
          FROM posts AS p
        tests:
          bad_column:
            given:
              posts: [{author: 1, created_at: 2024-01-01}]
            expect: []
        """,
    )
    result = run_cli(project, "test")
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/wrong.yaml:8: wrong_bad_column failed in backfill mode\n"
        '  error: column "author" of relation "posts" does not exist\n'
        "0 passed, 1 failed\n"
    )


def test_invalid_cases_are_reported_at_their_lines(run_cli, project):
    project.write(
        "rules/talker.yaml",
        TALKER.split("    tests:")[0]
        + """
    tests:
      Bad-Name: {given: {}, expect: []}
      no_expect:
        given: {comments: []}
      wrong_level:
        modes: [sideways]
        expect:
          - {user_id: 1, level: platinum, achieved_at: 2024-01-01}
          - {level: bronze}
""",
    )
    result = run_cli(project, "test")
    assert result.exit_code == 1
    assert result.stderr == (
        "rules/talker.yaml:17: test case name 'Bad-Name' must match [a-z0-9_]+\n"
        "rules/talker.yaml:18: test case 'no_expect' has no expect: (use [] for no grants)\n"
        "rules/talker.yaml:21: mode 'sideways' is not one of the rule's modes "
        "(backfill, incremental)\n"
        "rules/talker.yaml:23: unknown level 'platinum' (expected one of bronze, silver)\n"
        "rules/talker.yaml:24: missing required key 'achieved_at'\n"
        "rules/talker.yaml:24: missing required key 'user_id'\n"
        "Error: 6 problems in rule files\n"
    )


def test_rules_without_cases_are_named(run_cli, project):
    project.write(
        "rules/untested.yaml",
        """
        slug: untested
        name: Untested
        kind: award
        query: SELECT p.author_id AS user_id, p.created_at AS achieved_at FROM posts AS p
        """,
    )
    result = run_cli(project, "test")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "0 passed, 0 failed\n",
        "rules without test cases: untested\n",
    )


def test_test_table_cannot_be_made_to_run_a_second_statement(sql):
    sql("CREATE TABLE victim (id int)")
    crafted = [
        # the old third argument, a query spliced into dynamic SQL
        ("comments", None, "SELECT 1 AS author_id; DROP TABLE victim"),
        ("comments; DROP TABLE victim", None, None),
        ("comments", '[{"author_id) SELECT 1; DROP TABLE victim; --": 1}]', None),
    ]
    for table, rows, given in crafted:
        with pytest.raises(psycopg.Error):
            sql("SELECT plaudit.test_table(%s, %s::jsonb, %s)", [table, rows, given])
    assert sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]
    # what it takes instead: a table, by name (a regclass), whose rows fill the copy
    sql("BEGIN")
    sql("CREATE TEMPORARY TABLE given AS SELECT 7 AS author_id, now() AS created_at")
    assert sql("SELECT plaudit.test_table('comments', NULL, 'pg_temp.given')") == [(1,)]
    assert sql("SELECT author_id FROM comments") == [(7,)]  # the temporary copy
    sql("ROLLBACK")


def test_authoring_functions_are_not_executable_by_public(sql):
    executable = sql(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p "
        "WHERE p.pronamespace = 'plaudit'::regnamespace "
        "  AND p.proname IN ('test_table', 'preview_rule', 'explain_rule') "
        "  AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) AS a "
        "       WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) ORDER BY 1")
    assert executable == []
    assert sql("SELECT count(*) FROM pg_proc WHERE proname IN "
               "('test_table', 'preview_rule', 'explain_rule') "
               "AND pronamespace = 'plaudit'::regnamespace") == [(3,)]


def test_a_given_select_must_be_one_plain_select(run_cli, project, sql):
    sql("CREATE TABLE victim (id int)")
    project.write(
        "rules/talker.yaml",
        TALKER.split("    tests:")[0]
        + """
    tests:
      two_statements:
        modes: [backfill]
        given:
          comments: "SELECT 1 AS author_id; DROP TABLE victim"
        expect: []
      writes:
        modes: [backfill]
        given:
          comments: |
            WITH gone AS (DELETE FROM victim RETURNING id) SELECT id AS author_id FROM gone
        expect: []
      a_probe:
        modes: [backfill]
        given:
          comments: SELECT pg_terminate_backend(pg_backend_pid()) AS author_id
        expect: []
""",
    )
    result = run_cli(project, "test")
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/talker.yaml:17: talker_two_statements failed in backfill mode\n"
        "  error: given 'comments' must be a single SELECT statement, found 2 statements\n"
        "rules/talker.yaml:22: talker_writes failed in backfill mode\n"
        "  error: given 'comments' must not modify data (found DELETE)\n"
        "rules/talker.yaml:28: talker_a_probe failed in backfill mode\n"
        "  error: given 'comments': function pg_terminate_backend() is not allowed in a rule "
        "query: it changes the session or server (see docs on the rule boundary)\n"
        "0 passed, 3 failed\n"
    )
    assert sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]


def test_a_disabled_rules_cases_run_and_events_that_trigger_nothing_fail(run_cli, project):
    """A case tests its rule whether or not the site runs it yet (`enabled: false`), and a
    case whose events trigger no run of the rule fails instead of passing untested."""
    rule = TALKER.split("    tests:")[0].replace("    triggers:", "    enabled: false\n    triggers:")
    project.write("rules/talker.yaml", rule + """
    tests:
      second_comment_earns_bronze:
        given:
          comments:
            - {author_id: 1, post_id: 5, created_at: 2024-01-01 10:00}
            - {author_id: 1, post_id: 5, created_at: 2024-01-02 10:00}
        expect:
          - {user_id: 1, level: bronze, achieved_at: 2024-01-02 10:00}
      the_wrong_events:
        given:
          comments:
            - {author_id: 1, post_id: 5, created_at: 2024-01-01 10:00}
        events:
          - {type: post_created, user_id: 1}
        modes: [incremental]
        expect: []
""")
    result = run_cli(project, "test")
    assert result.exit_code == 1
    assert result.stdout == (
        "rules/talker.yaml:18: talker_second_comment_earns_bronze passed\n"
        "rules/talker.yaml:25: talker_the_wrong_events failed in incremental mode\n"
        "  error: the case's events trigger no run of talker (its triggers: comment_created)\n"
        "1 passed, 1 failed\n"
    )
