"""Nothing in a rule or a row can jam the runners (issue 19): a poison row fails nobody
forever, a backfill that skipped busy rules says so, and `status` reports it."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]


def bundled(demo_project, run_cli, sql):
    shutil.copy(REPO / "plaudit.yaml", demo_project.path / "plaudit.yaml")
    sql("INSERT INTO users (id, name, created_at) VALUES (1, 'one', '2024-01-01')")
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 1, 'article', 'hello', '2024-01-01')")
    assert run_cli(demo_project, "deploy").exit_code == 0


def test_a_row_dated_infinity_jams_no_rule(demo_project, run_cli, sql):
    bundled(demo_project, run_cli, sql)
    sql("INSERT INTO comments (post_id, author_id, body, created_at) "
        "SELECT 1, 1, 'x', '2024-03-01'::timestamptz + g * interval '1 day' "
        "FROM generate_series(1, 9) AS g")
    sql("INSERT INTO comments (post_id, author_id, body, created_at) "
        "VALUES (1, 1, 'x', 'infinity')")
    run = run_cli(demo_project, "run")
    assert run.exit_code == 0, run.output
    backfill = run_cli(demo_project, "backfill")
    assert backfill.exit_code == 0, backfill.output
    # the row counts (ten comments, the tenth at infinity) but makes no streak day
    assert sql("SELECT level, achieved_at::text FROM plaudit.user_badge "
               "WHERE badge = 'commentator'") == [("bronze", "infinity")]
    assert sql("SELECT value::int FROM plaudit.user_progress WHERE badge = 'activity_streak'"
               ) == [(9,)]
    assert "infinity" in run_cli(demo_project, "user", "1").stdout


def test_a_backfill_that_skipped_busy_rules_says_so_and_status_too(demo_project, run_cli,
                                                                  sql, dsn):
    bundled(demo_project, run_cli, sql)
    with psycopg.connect(dsn) as other:
        # another run holds commentator's lock (what a concurrent backfill or runner does)
        other.execute("SELECT pg_advisory_xact_lock(hashtext('plaudit'), hashtext('commentator'))")
        result = run_cli(demo_project, "backfill", "--select", "commentator", "--select",
                         "first_post")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1] == (
        "Error: 1 of 2 rules skipped: another run held them (commentator); run the backfill "
        "again, or with --wait")
    status = run_cli(demo_project, "status")
    assert status.exit_code == 1
    assert "attention: 1 rule was skipped by its last backfill (commentator)" in status.stderr
    # a backfill that waits for the lock instead
    assert run_cli(demo_project, "backfill", "--select", "commentator", "--wait").exit_code == 0
    assert "skipped by its last backfill" not in run_cli(demo_project, "status").stderr
