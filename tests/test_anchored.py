"""Anchored progress (sql/helpers.sql `anchored`, the carry of sql/kinds/count.sql and
sum.sql): a batch user whose progress row counts the source up to a time before the batch
is read from that row on, and the levels they cross are dated among their new rows. Each
case ends equal to a backfill from scratch, and would not if the anchor were wrong: a level
crossed inside the batch, rows tied at `through_at`, a late event, an old peak of a running
sum above its total. The cases named for what is read (a queue drained in batches, each
user's own earliest event) prove it with a row deleted without an event, which stays counted
only when the user was read from the progress row."""

from __future__ import annotations

from datetime import UTC, datetime

from plaudit.runtime.runner import run_batch
from sample_rules import commentator_rule

COUNT_RULE = commentator_rule(3, 5)

# The comment's body as a number: amounts of any sign.
SUM_RULE = """
    slug: tally
    name: Tally
    kind: sum
    triggers: [comment_created]
    levels:
      - {key: bronze, name: Bronze, threshold: 10, points: 1}
      - {key: silver, name: Silver, threshold: 20, points: 2}
      - {key: gold, name: Gold, threshold: 30, points: 3}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at, c.body::numeric AS amount
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
"""


def day(n: int) -> datetime:
    return datetime(2024, 1, n, tzinfo=UTC)


def comment(sql, author, at, body="x", track=True):
    sql("INSERT INTO users (id, name, created_at) VALUES (%s, 'u', '2020-01-01') "
        "ON CONFLICT DO NOTHING", [author])
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, %s, 'article', 'hello', '2020-01-01') ON CONFLICT DO NOTHING", [author])
    sql("INSERT INTO comments (post_id, author_id, body, created_at) VALUES (1, %s, %s, %s)",
        [author, body, at])
    if track:
        sql("SELECT plaudit.track('comment_created', %s, %s)", [author, at])


def run(engine):
    """One batch of everything queued; every rule run ok."""
    result = run_batch(engine, 1000)
    assert result.events and not result.failed, result


def state(sql):
    return (
        sql("SELECT user_id, badge, level, achieved_at FROM plaudit.user_badge ORDER BY 1, 2, 3"),
        sql("SELECT user_id, badge, value, next_level, through_at FROM plaudit.user_progress "
            "ORDER BY 1, 2"),
    )


def ready(deployed, project, *rules):
    """The rules deployed and backfilled on empty tables: not due, so their progress is
    trusted."""
    engine = deployed(*rules)
    engine.backfill(project.rules())
    return engine


def agrees_with_a_backfill(sql, engine, project):
    incremental = state(sql)
    sql("DELETE FROM plaudit.user_badge WHERE source = 'rule'")
    sql("TRUNCATE plaudit.user_progress")
    engine.backfill(project.rules())
    assert state(sql) == incremental
    return incremental


def test_a_user_with_progress_is_read_from_it_and_crosses_levels_inside_the_batch(
    deployed, project, sql
):
    engine = ready(deployed, project, COUNT_RULE)
    comment(sql, 7, day(1))
    comment(sql, 7, day(2))
    run(engine)
    assert state(sql)[1] == [(7, "commentator", 2, "bronze", day(2))]
    # the third and the fifth row, both in the next batch, with another user's events
    for d in (3, 4, 5, 6):
        comment(sql, 7, day(d))
    comment(sql, 8, day(3))
    run(engine)
    grants, progress = agrees_with_a_backfill(sql, engine, project)
    assert grants == [(7, "commentator", "bronze", day(3)), (7, "commentator", "silver", day(5))]
    assert progress == [(7, "commentator", 6, None, day(6)), (8, "commentator", 1, "bronze", day(3))]


def test_the_anchor_is_what_is_read(deployed, project, sql):
    # A row deleted without an event stays counted until a complete backfill (events.md):
    # proof that the second batch went on from the progress row, not from the history.
    engine = ready(deployed, project, COUNT_RULE)
    comment(sql, 7, day(1))
    comment(sql, 7, day(2))
    run(engine)
    sql("DELETE FROM comments WHERE created_at = %s", [day(1)])
    for d in (3, 4, 5):
        comment(sql, 7, day(d))
    run(engine)
    assert state(sql)[0] == [(7, "commentator", "bronze", day(3)),
                             (7, "commentator", "silver", day(5))]
    assert state(sql)[1] == [(7, "commentator", 5, None, day(5))]


def test_rows_tied_at_through_at_are_read_in_full(deployed, project, sql):
    engine = ready(deployed, project, COUNT_RULE)
    comment(sql, 7, day(1))
    comment(sql, 7, day(2))
    run(engine)
    # a new row at the very time the progress counts up to: not after it, so not anchored
    comment(sql, 7, day(2))
    run(engine)
    grants, progress = agrees_with_a_backfill(sql, engine, project)
    assert grants == [(7, "commentator", "bronze", day(2))]
    assert progress == [(7, "commentator", 3, "silver", day(2))]


def test_a_late_event_reads_the_user_in_full(deployed, project, sql):
    engine = ready(deployed, project, COUNT_RULE)
    comment(sql, 7, day(1))
    comment(sql, 7, day(5))
    comment(sql, 8, day(1))
    run(engine)
    # dated before user 7's through_at, in a batch with user 8's new row
    comment(sql, 7, day(3))
    comment(sql, 8, day(6))
    run(engine)
    grants, progress = agrees_with_a_backfill(sql, engine, project)
    assert grants == [(7, "commentator", "bronze", day(5))]
    assert progress == [(7, "commentator", 3, "silver", day(5)),
                        (8, "commentator", 2, "bronze", day(6))]


def test_a_running_sum_goes_on_from_its_total_above_its_old_peak(deployed, project, sql):
    engine = ready(deployed, project, SUM_RULE)
    comment(sql, 7, day(1), "15")  # bronze; the peak stays 15
    comment(sql, 7, day(2), "-10")
    run(engine)
    assert state(sql)[1] == [(7, "tally", 5, "silver", day(2))]
    # down again: the next level stays silver (the peak, 15, is above bronze's 10)
    comment(sql, 7, day(3), "-3")
    run(engine)
    assert state(sql)[1] == [(7, "tally", 2, "silver", day(3))]
    # 2 + 12 = 14, then tied rows reach 21 together on day 5: silver then
    comment(sql, 7, day(4), "12")
    comment(sql, 7, day(5), "4")
    comment(sql, 7, day(5), "3")
    run(engine)
    grants, progress = agrees_with_a_backfill(sql, engine, project)
    assert grants == [(7, "tally", "bronze", day(1)), (7, "tally", "silver", day(5))]
    assert progress == [(7, "tally", 21, "gold", day(5))]


def test_a_running_sum_crosses_several_levels_in_one_batch_and_dips(deployed, project, sql):
    engine = ready(deployed, project, SUM_RULE)
    comment(sql, 7, day(1), "4")
    run(engine)
    # 4 + 8 = 12 (bronze), -5 = 7, +16 = 23 (silver), +9 = 32 (gold), -30 = 2
    for d, amount in ((2, "8"), (3, "-5"), (4, "16"), (5, "9"), (6, "-30")):
        comment(sql, 7, day(d), amount)
    run(engine)
    grants, progress = agrees_with_a_backfill(sql, engine, project)
    assert grants == [(7, "tally", "bronze", day(2)), (7, "tally", "gold", day(5)),
                      (7, "tally", "silver", day(4))]
    assert progress == [(7, "tally", 2, None, day(6))]


def test_each_user_is_anchored_by_their_own_earliest_event(deployed, project, sql):
    # user 8's late event starts the batch before user 7's through_at: user 7 is anchored
    # all the same, by their own event after it. A row deleted without an event stays
    # counted until a complete backfill (events.md): proof that user 7 was read from the
    # progress row (the batch's earliest event would have read them in full)
    engine = ready(deployed, project, COUNT_RULE)
    for d in (2, 3):
        comment(sql, 7, day(d))
    comment(sql, 8, day(5))
    run(engine)
    sql("DELETE FROM comments WHERE author_id = 7 AND created_at = %s", [day(2)])
    comment(sql, 8, day(1))
    comment(sql, 7, day(6))
    run(engine)
    assert state(sql)[1] == [(7, "commentator", 3, "silver", day(6)),
                             (8, "commentator", 2, "bronze", day(5))]


def test_a_batch_takes_its_users_later_events_and_stays_anchored(deployed, project, sql):
    # A queue drained in batches: the rows of a user's later events are in the tables when
    # an earlier batch reads the user. take_events takes those events with it, so no later
    # batch has an event of theirs dated before the progress it wrote, which would read
    # them in full (the deleted row would no longer be counted).
    engine = ready(deployed, project, COUNT_RULE)
    comment(sql, 7, day(1))
    run(engine)
    sql("DELETE FROM comments WHERE author_id = 7 AND created_at = %s", [day(1)])
    comment(sql, 7, day(2))
    comment(sql, 8, day(2))
    comment(sql, 7, day(3))
    first = run_batch(engine, 1)
    assert first.events == 2 and not first.failed  # user 7's two events, not user 8's
    assert sql("SELECT user_id FROM plaudit.event") == [(8,)]
    run(engine)
    assert state(sql)[1] == [(7, "commentator", 3, "silver", day(3)),
                             (8, "commentator", 1, "bronze", day(2))]


def test_a_batch_looks_for_its_users_later_events_among_the_next_ten_batches_only(
    deployed, project, sql
):
    # a bounded read of a queue of any length: user 7's event after 10 others is left
    engine = ready(deployed, project, COUNT_RULE)
    comment(sql, 7, day(1))
    for user in range(20, 30):
        comment(sql, user, day(1))
    comment(sql, 7, day(2))
    first = run_batch(engine, 1)
    assert first.events == 1 and not first.failed
    assert sql("SELECT count(*) FROM plaudit.event WHERE user_id = 7") == [(1,)]
