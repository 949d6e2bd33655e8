"""Incremental runs equal a backfill in the cases that once broke it (issue 11): grants to
someone other than the event's user re-check the composites reading them, new and changed
rules are due until backfilled, progress follows its source, moved dates are reported,
revocations stick, and a dry run says one thing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest

from plaudit.runtime.engine import Event
from plaudit.runtime.runner import run_batch
from sample_rules import commentator_rule

# A post author's badge, earned through other people's comments: the event is the
# commenter's, the grant the author's (like the bundled influencer).
DISCUSSED = """
    slug: discussed
    name: Discussed
    kind: count
    triggers: [comment_created]
    levels:
      - {key: bronze, name: Noticed, threshold: 2, points: 5}
      - {key: silver, name: Debated, threshold: 3, points: 10}
    query: |
      SELECT p.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      JOIN posts AS p ON p.id = c.post_id
      WHERE c.author_id <> p.author_id
      {%- if is_incremental() %}
        AND p.author_id IN (
            SELECT a.author_id FROM {{ batch }} AS b
            JOIN posts AS a ON a.id = (b.payload ->> 'post_id')::bigint)
      {%- endif %}
"""

# A composite with no triggers of its own: the grants it reads trigger it.
STAR = """
    slug: star
    name: Star
    kind: count
    triggers: []
    levels:
      - {key: star, name: Star, threshold: 2, points: 50}
    query: |
      SELECT b.user_id, b.achieved_at AS occurred_at FROM {{ badge('discussed') }} AS b
      WHERE {{ affected('b.user_id') }}
"""

COMMENTATOR = commentator_rule(2, 3)

EVENTS = """
events:
  comment_created: {table: comments, on: insert, user: author_id, at: created_at}
"""


def day(n: int, hour: int = 12) -> datetime:
    return datetime(2024, 1, n, hour, tzinfo=UTC)


@pytest.fixture
def site(project, deployed, sql):
    """Users 1..3, user 2's post (id 1); comments are captured as events by a trigger."""
    project.write("plaudit.yaml", EVENTS)
    sql("INSERT INTO users (id, name, created_at) SELECT u, 'u' || u, '2023-01-01' "
        "FROM generate_series(1, 3) AS u")
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 2, 'article', 'hello', '2023-12-01')")
    return deployed


def comment(sql, author: int, at: datetime, post: int = 1) -> None:
    sql("INSERT INTO comments (post_id, author_id, body, created_at) VALUES (%s, %s, 'x', %s)",
        [post, author, at])


def grants(sql):
    return sql("SELECT user_id, badge, level, achieved_at FROM plaudit.user_badge ORDER BY 1, 2, 3")


def progress(sql):
    return sql("SELECT user_id, badge, value::int, next_level FROM plaudit.user_progress "
               "ORDER BY 1, 2")


def test_a_grant_to_someone_else_re_checks_the_composites_reading_it(site, project, sql):
    engine = site(DISCUSSED, STAR)
    engine.backfill(project.rules())  # nothing yet; the rules are no longer due
    for n in (1, 2, 3):
        comment(sql, 1, day(n))  # user 1 comments on user 2's post: user 2's badge
    result = run_batch(engine, 100)
    assert [(r.slug, r.granted) for r in result.runs] == [("discussed", 2), ("star", 1)]
    assert grants(sql) == [(2, "discussed", "bronze", day(2)), (2, "discussed", "silver", day(3)),
                           (2, "star", "star", day(3))]
    # the star grant is news, reported with the batch like the others
    assert [(g["user_id"], g["badge"]) for g in result.grants] == [
        (2, "discussed"), (2, "discussed"), (2, "star")]
    incremental = grants(sql), progress(sql)
    sql("TRUNCATE plaudit.user_badge, plaudit.user_progress")
    engine.backfill(project.rules())
    assert (grants(sql), progress(sql)) == incremental


def test_awards_and_revocations_re_check_the_rules_reading_the_badge(site, project, sql):
    engine = site(DISCUSSED, STAR)
    engine.backfill(project.rules())
    engine.award("discussed", 3, "met the team", level="bronze", achieved_at=day(5))
    assert progress(sql) == [(3, "star", 1, "star")]
    engine.award("discussed", 3, "keynote", level="silver", achieved_at=day(6))
    assert grants(sql) == [(3, "discussed", "bronze", day(5)), (3, "discussed", "silver", day(6)),
                           (3, "star", "star", day(6))]
    assert sql("SELECT seen_at IS NULL FROM plaudit.user_badge WHERE badge = 'star'") == [(True,)]
    # a revocation: the composite's progress follows (as a backfill computes it); its grant
    # stands (no `revoke: true`)
    assert progress(sql) == [(3, "star", 2, None)]
    engine.revoke("discussed", 3, "duplicate account", level="silver")
    assert progress(sql) == [(3, "star", 1, "star")]
    assert [g[1:3] for g in grants(sql)] == [("discussed", "bronze"), ("star", "star")]
    incremental = grants(sql), progress(sql)
    engine.backfill(project.rules())
    assert (grants(sql), progress(sql)) == incremental


def test_a_new_rule_is_brought_up_to_date_by_the_jobs_alone(site, project, sql, dsn):
    engine = site(COMMENTATOR)
    engine.backfill(project.rules())
    for n in (1, 2, 3):
        comment(sql, 1, day(n))
    run_batch(engine, 100)
    # a new rule on the same history, then only what the pg_cron jobs run
    site(DISCUSSED, STAR)
    assert sql("SELECT slug, reason FROM plaudit.due_rules()") == [
        ("discussed", "new"), ("star", "new")]
    comment(sql, 3, day(4))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL plaudit.job_events()")
        conn.execute("CALL plaudit.job_nightly()")
    assert sql("SELECT slug, reason FROM plaudit.due_rules()") == []
    jobs = grants(sql), progress(sql)
    assert (2, "star", "star", day(3)) in jobs[0]
    sql("TRUNCATE plaudit.user_badge, plaudit.user_progress")
    engine.backfill(project.rules())
    assert (grants(sql), progress(sql)) == jobs


def test_a_changed_rule_is_due_and_its_shortcuts_do_not_trust_old_grants(site, project, sql):
    engine = site(COMMENTATOR)
    engine.backfill(project.rules())
    for n in (1, 2, 3, 4):
        comment(sql, 1, day(n))
    run_batch(engine, 100)
    assert grants(sql) == [(1, "commentator", "bronze", day(2)),
                           (1, "commentator", "silver", day(3))]
    # lower thresholds: every level is now reached earlier
    engine = site(commentator_rule(1, 2))
    assert sql("SELECT due FROM plaudit.badge") == [("changed",)]
    comment(sql, 1, day(5))
    run_batch(engine, 100)  # user 1 holds every level: only a full read finds the new dates
    assert grants(sql) == [(1, "commentator", "bronze", day(1)),
                           (1, "commentator", "silver", day(2))]
    assert progress(sql) == [(1, "commentator", 5, None)]


def test_a_complete_backfill_removes_progress_its_source_no_longer_supports(site, project, sql):
    engine = site(COMMENTATOR)
    comment(sql, 1, day(1))
    comment(sql, 3, day(1))
    engine.backfill(project.rules())
    assert progress(sql) == [(1, "commentator", 1, "bronze"), (3, "commentator", 1, "bronze")]
    sql("DELETE FROM comments WHERE author_id = 3")
    [result] = engine.backfill(project.rules())
    assert progress(sql) == [(1, "commentator", 1, "bronze")]
    assert result.progressed == 1  # the row removed


def test_a_late_event_moving_a_date_is_reported_not_notified(site, project, sql, run_cli):
    engine = site(COMMENTATOR)
    engine.backfill(project.rules())
    for n in (3, 4, 5):
        comment(sql, 1, day(n))
    run_batch(engine, 100)
    comment(sql, 1, day(1))  # late: bronze moves from day 4 to day 3, silver to day 4
    result = run_cli(project, "run")
    assert result.exit_code == 0
    assert result.stdout == ""  # nothing new to tell anyone
    assert "1 rule, 0 granted, 2 moved earlier" in result.stderr
    assert sql("SELECT granted, moved FROM plaudit.run ORDER BY run_id DESC LIMIT 1") == [(0, 2)]
    assert grants(sql) == [(1, "commentator", "bronze", day(3)),
                           (1, "commentator", "silver", day(4))]
    # a backfill reports what it moves too, in its JSON (a row written without an event)
    sql("ALTER TABLE comments DISABLE TRIGGER USER")
    comment(sql, 1, day(1, 0))
    backfill = run_cli(project, "backfill", "--json")
    assert backfill.exit_code == 0
    report = json.loads(backfill.stdout)
    assert (report["rule"], report["granted"], report["moved"]) == ("commentator", 0, 2)
    assert "0 granted, 2 moved earlier" in backfill.stderr


def test_a_dry_run_says_one_thing(site, project, sql, run_cli):
    site(COMMENTATOR)
    for n in (1, 2, 3):
        comment(sql, 1, day(n))
    result = run_cli(project, "backfill", "--dry-run")
    assert result.exit_code == 0
    assert "commentator" in result.stderr and "2 would grant" in result.stderr
    assert result.stdout.splitlines() == ["commentator\tbronze\t1", "commentator\tsilver\t1"]
    as_json = json.loads(run_cli(project, "backfill", "--dry-run", "--json").stdout)
    assert (as_json["granted"], as_json["levels"], as_json["dry_run"]) == (
        2, {"bronze": 1, "silver": 1}, True)
    assert grants(sql) == []


def test_check_leaves_a_busy_composites_events_in_the_queue(site, project, sql, dsn):
    """check() skips a rule busy elsewhere (an app's request must not wait); the grants it
    would have read must not be lost with the batch: they wait in the queue for it."""
    engine = site(DISCUSSED, STAR)
    engine.backfill(project.rules())
    sql("ALTER TABLE comments DISABLE TRIGGER USER")  # the app calls check() itself
    for n in (1, 2, 3):
        comment(sql, 1, day(n))
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(hashtext('plaudit'), hashtext('star'))")
        with engine.db.conn.transaction():
            added = engine.check([Event("comment_created", 1, day(3), {"post_id": 1})])
    assert [(g["badge"], g["level"]) for g in added] == [
        ("discussed", "bronze"), ("discussed", "silver")]
    assert sql("SELECT type, user_id, rule FROM plaudit.event ORDER BY event_id") == [
        ("badge:discussed", 2, "star"), ("badge:discussed", 2, "star")]
    run_batch(engine, 100)
    assert (2, "star", "star", day(3)) in grants(sql)
