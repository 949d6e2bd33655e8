"""The incremental path against a real PostgreSQL: the queue, exactly-once batches, trigger
capture, failure isolation, check(), notifications, seen and unseen grants."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from plaudit.errors import ConnectionFailed, DatabaseError
from plaudit.runtime.db import connect
from plaudit.runtime.engine import Event
from plaudit.runtime.runner import Runner, run_batch
from sample_rules import commentator_rule

COUNT_RULE = commentator_rule(3, 5)

# One grant per processed event (scope = event id): makes every event's processing visible.
LOG_RULE = """
    slug: event_log
    name: Event Log
    kind: award
    triggers: [ping]
    query: |
      {% if is_incremental() %}
      SELECT b.user_id, b.occurred_at AS achieved_at, b.event_id AS scope FROM {{ batch }} AS b
      {% else %}
      SELECT NULL::bigint AS user_id, NULL::timestamptz AS achieved_at, NULL::bigint AS scope
      WHERE false
      {% endif %}
"""

# Sleeps while the table slow_flag has a row: a batch that can be caught in the middle.
SLOW_RULE = """
    slug: zz_slow
    name: Slow
    kind: award
    triggers: [ping]
    query: |
      SELECT b.user_id, b.occurred_at AS achieved_at
      FROM {% if is_incremental() %}{{ batch }}{% else %}plaudit.event{% endif %} AS b,
           pg_sleep(CASE WHEN EXISTS (SELECT FROM slow_flag) THEN {{ 30 if is_incremental() else 0 }} ELSE 0 END)
"""


def seed_comments(sql, rows, track=True):
    """rows: (author_id, created_at); with track, each comment is also a queued event."""
    authors = sorted({a for a, _ in rows} | {1})
    sql("INSERT INTO users (id, name, created_at) SELECT u, 'u' || u, '2020-01-01' "
        "FROM unnest(%s::bigint[]) AS u ON CONFLICT DO NOTHING", [authors])
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 1, 'article', 'hello', '2020-01-01') ON CONFLICT DO NOTHING")
    for author, at in rows:
        sql("INSERT INTO comments (post_id, author_id, body, created_at) "
            "VALUES (1, %s, 'x', %s)", [author, at])
        if track:
            sql("SELECT plaudit.track('comment_created', %s, %s)", [author, at])


def grants(sql):
    return sql("SELECT user_id, badge, level, scope, achieved_at FROM plaudit.user_badge "
               "ORDER BY 1, 2, 3, 4")


def pending(sql):
    return sql("SELECT count(*) FROM plaudit.event")[0][0]


def day(n, hour=0):
    return datetime(2024, 1, n, hour, tzinfo=UTC)


def test_a_batch_runs_the_triggered_rules_on_its_users_and_consumes_its_events(deployed, sql):
    engine = deployed(COUNT_RULE, LOG_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3, 4)] + [(8, day(1))])
    seed_comments(sql, [(9, day(d)) for d in (1, 2, 3)], track=False)  # no events: untouched
    result = run_batch(engine, 100)
    assert (result.events, [r.slug for r in result.runs], result.granted) == (
        5, ["commentator"], 1)  # event_log is not triggered by comment_created
    assert grants(sql) == [(7, "commentator", "bronze", "", day(3))]
    assert [(g["user_id"], g["level"], g["level_name"]) for g in result.grants] == [
        (7, "bronze", "Chatty")]
    assert pending(sql) == 0
    assert sql("SELECT user_id, value, next_level FROM plaudit.user_progress ORDER BY 1") == [
        (7, 4, "silver"), (8, 1, "bronze")]
    assert sql("SELECT badge, mode, status, granted FROM plaudit.run") == [
        ("commentator", "incremental", "ok", 1)]
    assert run_batch(engine, 100).events == 0


def test_a_user_holding_every_level_is_read_again_only_for_an_event_before_a_grant(
        project, deployed, sql):
    engine = deployed(COUNT_RULE)  # bronze at 3 comments, silver at 5
    # a new rule is due: shortcuts trust its grants and progress only after a backfill
    engine.backfill(project.rules())
    seed_comments(sql, [(7, day(d)) for d in range(1, 7)] + [(8, day(d)) for d in (1, 2, 3)])
    run_batch(engine, 100)
    assert grants(sql) == [(7, "commentator", "bronze", "", day(3)),
                           (7, "commentator", "silver", "", day(5)),
                           (8, "commentator", "bronze", "", day(3))]

    def progress():
        return sql("SELECT user_id, value, next_level FROM plaudit.user_progress ORDER BY 1")

    assert progress() == [(7, 6, None), (8, 3, "silver")]
    # later comments: 7 holds every level, dated before them, so 7's history is not read
    # again: the progress is carried forward, 6 counted through day 6 plus 1 after it. (An
    # old comment deleted without an event shows it: a full read would count 6.)
    sql("DELETE FROM comments WHERE author_id = 7 AND created_at = %s", [day(1)])
    seed_comments(sql, [(7, day(10)), (8, day(10))])
    assert run_batch(engine, 100).events == 2
    assert progress() == [(7, 7, None), (8, 4, "silver")]
    # a late comment, dated before 7's grants: the batch reaches back, 7 is read again and
    # both dates move earlier, as a backfill would have them
    sql("INSERT INTO comments (post_id, author_id, body, created_at) "
        "SELECT min(id), 7, 'x', %s FROM posts", [day(1)])
    seed_comments(sql, [(7, day(2, 12))])
    run_batch(engine, 100)
    assert progress() == [(7, 8, None), (8, 4, "silver")]
    incremental = grants(sql)
    assert incremental == [(7, "commentator", "bronze", "", day(2, 12)),
                           (7, "commentator", "silver", "", day(4)),
                           (8, "commentator", "bronze", "", day(3))]
    sql("TRUNCATE plaudit.user_badge")
    engine.backfill(project.rules())
    assert grants(sql) == incremental


STREAK_RULE = """
    slug: streaker
    name: Streaker
    kind: streak
    triggers: [comment_created]
    levels:
      - {key: bronze, name: Two Days, threshold: 2}
      - {key: silver, name: Three Days, threshold: 3}
    query: |
      SELECT c.author_id AS user_id, c.created_at AS occurred_at
      FROM comments AS c
      WHERE {{ affected('c.author_id') }}
"""


def test_streak_users_are_read_from_their_last_active_day_and_stay_exact(
        project, deployed, sql):
    engine = deployed(STREAK_RULE)

    def progress():
        return sql("SELECT user_id, value, next_level, expires_at FROM plaudit.user_progress "
                   "ORDER BY 1")

    def after(rows):
        seed_comments(sql, rows)
        run_batch(engine, 100)
        return progress()

    # 7 holds both levels after days 1-3 (done); 8 and 9 have one day
    assert after([(7, day(1)), (7, day(2)), (7, day(3)), (8, day(1)), (9, day(1))]) == [
        (7, 3, None, day(5)), (8, 1, "bronze", day(3)), (9, 1, "bronze", day(3))]
    # from here each is read from their last active day on: 7 on the same day, the next
    # day, then in a new run; 9 reaches bronze, then silver on a run carried over
    assert after([(7, day(3, 20)), (9, day(2))]) == [
        (7, 3, None, day(5)), (8, 1, "bronze", day(3)), (9, 2, "silver", day(4))]
    assert after([(7, day(4)), (8, day(2)), (9, day(3))]) == [
        (7, 4, None, day(6)), (8, 2, "silver", day(4)), (9, 3, None, day(5))]
    assert after([(7, day(7))])[0] == (7, 1, None, day(9))
    # late days 5 and 6, before the current run: read in full again, the runs join up
    assert after([(7, day(6)), (7, day(5))])[0] == (7, 7, None, day(9))
    assert sql("SELECT user_id, level, achieved_at FROM plaudit.user_badge WHERE user_id = 9 "
               "ORDER BY 3") == [(9, "bronze", day(2)), (9, "silver", day(3))]
    incremental = grants(sql), progress()
    sql("TRUNCATE plaudit.user_badge, plaudit.user_progress")
    engine.backfill(project.rules())
    assert (grants(sql), progress()) == incremental


def test_batches_take_events_in_order_and_at_most_batch_size(deployed, sql):
    engine = deployed(LOG_RULE)
    for user in range(1, 8):
        sql("SELECT plaudit.track('ping', %s)", [user])
    assert [run_batch(engine, 3).events for _ in range(4)] == [3, 3, 1, 0]
    assert sql("SELECT user_id, scope FROM plaudit.user_badge ORDER BY 1") == [
        (u, str(u)) for u in range(1, 8)]


def test_an_event_committed_after_later_ones_were_processed_is_still_processed(
        deployed, dsn, sql):
    engine = deployed(LOG_RULE)
    late = psycopg.connect(dsn)  # a transaction that stays open
    late.execute("SELECT plaudit.track('ping', 1)")  # event 1, not committed yet
    sql("SELECT plaudit.track('ping', 2)")  # event 2, committed
    first = run_batch(engine, 100)
    late.commit()
    late.close()
    second = run_batch(engine, 100)
    assert (first.events, second.events, run_batch(engine, 100).events) == (1, 1, 0)
    assert sql("SELECT user_id, scope FROM plaudit.user_badge ORDER BY 1") == [
        (1, "1"), (2, "2")]
    assert sum(r.granted for r in first.runs + second.runs) == 2


def test_a_batch_that_dies_midway_consumes_nothing_and_is_redone_once(
        deployed, engine_for, project, sql):
    sql("CREATE TABLE slow_flag (x int)")
    sql("INSERT INTO slow_flag VALUES (1)")
    project.write("plaudit.yaml", "allow_functions: [pg_sleep]\n")  # a slow rule, on purpose
    engine = deployed(LOG_RULE, SLOW_RULE)
    for user in (1, 2, 3):
        sql("SELECT plaudit.track('ping', %s)", [user])
    errors = []

    def work():
        try:
            run_batch(engine, 100)
        except DatabaseError as exc:
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    for _ in range(100):  # event_log has run; zz_slow sleeps: kill the runner mid-batch
        if sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE datname = current_database() AND wait_event = 'PgSleep'"):
            break
        time.sleep(0.05)
    worker.join(10)
    assert len(errors) == 1 and str(errors[0]).startswith("processing a batch of events: ")
    assert (pending(sql), grants(sql), sql("SELECT count(*) FROM plaudit.run")) == (3, [], [(0,)])

    sql("DELETE FROM slow_flag")
    result = run_batch(engine_for(project), 100)
    assert (result.events, [r.granted for r in result.runs]) == (3, [3, 3])
    assert pending(sql) == 0
    assert sql("SELECT badge, count(*) FROM plaudit.user_badge GROUP BY 1 ORDER BY 1") == [
        ("event_log", 3), ("zz_slow", 3)]


def test_concurrent_runners_take_disjoint_batches_and_wait_for_busy_rules(
        deployed, engine_for, project, sql):
    sql("CREATE TABLE slow_flag (x int)")
    project.write("plaudit.yaml", "allow_functions: [pg_sleep]\n")  # a slow rule, on purpose
    engine = deployed(LOG_RULE, SLOW_RULE.replace("30 if", "0.5 if"))
    sql("INSERT INTO slow_flag VALUES (1)")
    for user in range(1, 11):
        sql("SELECT plaudit.track('ping', %s)", [user])
    engines = [engine, engine_for(project)]
    results = []

    def work(e):
        results.append(run_batch(e, 5))

    threads = [threading.Thread(target=work, args=(e,)) for e in engines]
    for t in threads:
        t.start()
        time.sleep(0.2)  # the first runner holds its events and the rules' locks
    for t in threads:
        t.join(20)
    assert sorted(r.events for r in results) == [5, 5]
    assert sql("SELECT DISTINCT status FROM plaudit.run") == [("ok",)]  # none skipped
    assert sql("SELECT count(DISTINCT scope) FROM plaudit.user_badge "
               "WHERE badge = 'event_log'") == [(10,)]
    assert pending(sql) == 0


def test_a_failing_rule_is_recorded_dirty_and_does_not_stop_the_batch(deployed, project, sql):
    project.write("plaudit.yaml", "allow_functions: [pg_sleep]\n")  # a slow rule, on purpose
    engine = deployed(COUNT_RULE, """
        slug: broken
        name: Broken
        kind: award
        triggers: [comment_created]
        query: |
          SELECT 1::bigint AS user_id, now() AS achieved_at WHERE 1 / 0 = 1
    """, """
        slug: slow
        name: Slow
        kind: award
        triggers: [comment_created]
        timeout: 200ms
        query: |
          SELECT 1::bigint AS user_id, now() AS achieved_at FROM pg_sleep(5)
    """)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3)])
    result = run_batch(engine, 100)
    assert [(r.slug, r.status, r.message) for r in result.runs] == [
        ("broken", "failed", "broken: division by zero (SQLSTATE 22012)"),
        ("commentator", "ok", None),
        ("slow", "failed", "slow: timed out after 200ms (cancelled by the watchdog)"),
    ]
    assert result.seconds < 3
    assert grants(sql) == [(7, "commentator", "bronze", "", day(3))]
    assert pending(sql) == 0
    assert sql("SELECT slug, dirty FROM plaudit.badge ORDER BY 1") == [
        ("broken", True), ("commentator", False), ("slow", True)]


def test_a_rule_busy_in_another_run_defers_its_events_instead_of_failing(
        deployed, dsn, sql):
    engine = deployed(COUNT_RULE.replace("    levels:", "    timeout: 300ms\n    levels:"),
                      LOG_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3)])
    sql("SELECT plaudit.track('ping', 8)")
    holder = psycopg.connect(dsn)  # a long backfill of the rule holds its lock
    holder.execute("SELECT pg_advisory_xact_lock(hashtext('plaudit'), hashtext('commentator'))")
    try:
        runs = run_batch(engine, 100).runs
    finally:
        holder.rollback()
        holder.close()
    # the other rule ran; commentator waited half its timeout, then gave its events back
    assert [(r.slug, r.status, r.message) for r in runs] == [
        ("commentator", "skipped", "commentator: busy in another run (canceling statement due "
         "to lock timeout, SQLSTATE 55P03); 3 events deferred to the queue for it"),
        ("event_log", "ok", None)]
    assert sql("SELECT dirty FROM plaudit.badge ORDER BY slug") == [(False,), (False,)]
    assert sql("SELECT rule, count(*) FROM plaudit.event GROUP BY 1") == [("commentator", 3)]
    # the next batch runs commentator alone on them
    assert [r.slug for r in run_batch(engine, 100).runs] == ["commentator"]
    assert [g[2] for g in grants(sql) if g[1] == "commentator"] == ["bronze"]
    assert pending(sql) == 0


@pytest.fixture
def listener(dsn):
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("LISTEN plaudit_award")

    def received():
        return [json.loads(n.payload) for n in conn.notifies(timeout=0.3)]

    yield received
    conn.close()


def test_listen_receives_exactly_the_incremental_grants(deployed, listener, sql):
    engine = deployed(COUNT_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3, 4, 5)] + [(8, day(1))])
    run_batch(engine, 100)
    assert sorted(listener(), key=lambda n: n["level"]) == [
        {"user_id": 7, "badge": "commentator", "level": "bronze", "name": "Chatty",
         "points": 5, "achieved_at": "2024-01-03T00:00:00+00:00"},
        {"user_id": 7, "badge": "commentator", "level": "silver", "name": "Commentator",
         "points": 25, "achieved_at": "2024-01-05T00:00:00+00:00"},
    ]
    assert sql("SELECT count(*) FROM plaudit.user_badge WHERE seen_at IS NULL") == [(2,)]
    seed_comments(sql, [(7, day(6))])  # nothing new to grant: nothing to say
    run_batch(engine, 100)
    assert listener() == []


def test_a_quiet_backfill_notifies_nobody(project, deployed, listener, sql):
    engine = deployed(COUNT_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3)], track=False)
    [result] = engine.backfill(project.rules())
    assert result.granted == 1
    assert listener() == []
    assert sql("SELECT seen_at IS NOT NULL FROM plaudit.user_badge") == [(True,)]


def test_an_announced_backfill_announces_only_grants_younger_than_max_age(
        project, deployed, listener, sql):
    project.write("plaudit.yaml", "notify: {channel: plaudit_award, max_age: 2 days}\n")
    engine = deployed(COUNT_RULE)
    now = datetime.now(UTC).replace(microsecond=0)
    recent = [now - timedelta(hours=h) for h in (3, 2, 1)]
    seed_comments(sql, [(7, at) for at in recent] + [(8, day(d)) for d in (1, 2, 3)], track=False)
    engine.backfill(project.rules(), announce=True)
    assert listener() == [{"user_id": 7, "badge": "commentator", "level": "bronze",
                           "name": "Chatty", "points": 5, "achieved_at": recent[2].isoformat()}]
    assert sql("SELECT user_id, seen_at IS NULL FROM plaudit.user_badge ORDER BY 1") == [
        (7, True), (8, False)]  # the old grant is quiet: already seen


def test_check_returns_new_grants_and_nothing_on_a_repeat(deployed, listener, sql):
    engine = deployed(COUNT_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3)], track=False)
    assert engine.check([Event("comment_created", 7)]) == [{
        "user_id": 7, "badge": "commentator", "level": "bronze", "scope": "",
        "badge_name": "Commentator", "level_name": "Chatty", "points": 5, "icon": None,
        "achieved_at": day(3)}]
    assert engine.check([Event("comment_created", 7)]) == []
    assert listener() == [{"user_id": 7, "badge": "commentator", "level": "bronze",
                           "name": "Chatty", "points": 5,
                           "achieved_at": "2024-01-03T00:00:00+00:00"}]
    seed_comments(sql, [(8, day(d)) for d in (1, 2, 3)], track=False)
    assert sql("SELECT user_id, badge, level FROM plaudit.check('comment_created', 8)") == [
        (8, "commentator", "bronze")]
    assert sql("SELECT * FROM plaudit.check('comment_created', 8)") == []
    assert engine.check([Event("post_created", 7)]) == []  # triggers no rule


def test_check_runs_in_the_callers_transaction_and_leaves_the_queue_alone(deployed, sql):
    engine = deployed(COUNT_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2)])
    conn = engine.db.conn
    with conn.transaction(force_rollback=True):
        conn.execute("INSERT INTO comments (post_id, author_id, body, created_at) "
                     "VALUES (1, 7, 'in the request', $1)", [day(3)])
        [grant] = engine.check([Event("comment_created", 7, day(3))])
        assert grant["level"] == "bronze"
    assert grants(sql) == []  # rolled back with the caller's transaction
    assert pending(sql) == 2


def test_a_batch_does_not_outlive_its_transaction_and_its_table_stays_small(deployed, sql):
    # the batch table is a plain temporary table (not ON COMMIT DELETE ROWS, which truncates
    # it at every commit): the event loop empties it, and batch_reset truncates it when grown
    engine = deployed(COUNT_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3)])
    conn = engine.db.conn
    batch = "SELECT count(*) AS n FROM pg_temp.plaudit_batch"
    assert run_batch(engine, 10).events == 3
    assert conn.execute(batch).fetchone()["n"] == 0
    engine.check([Event("comment_created", 7, day(4))])
    assert conn.execute(batch).fetchone()["n"] == 0
    size = "SELECT pg_relation_size('pg_temp.plaudit_batch') AS bytes"
    for _ in range(8):  # each check leaves dead rows behind: about 20 a page
        engine.check([Event("comment_created", 7, day(5), {"pad": "x" * 300})] * 40)
    assert conn.execute(size).fetchone()["bytes"] <= 65536 + 8192 * 3


def test_check_skips_a_rule_busy_in_another_run_instead_of_waiting(deployed, dsn, sql):
    engine = deployed(COUNT_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3)])  # queued as well
    holder = psycopg.connect(dsn)  # a batch of `plaudit run` holds the rule
    holder.execute("SELECT pg_advisory_xact_lock(hashtext('plaudit'), hashtext('commentator'))")
    try:
        started = time.monotonic()
        assert engine.check([Event("comment_created", 7)]) == []
        assert time.monotonic() - started < 2
    finally:
        holder.rollback()
        holder.close()
    assert sql("SELECT status, message FROM plaudit.run") == [
        ("skipped", "commentator: busy in another run (another run holds its lock, SQLSTATE "
         "55P03); 1 event deferred to the queue for it")]
    assert run_batch(engine, 100).granted == 1  # the queued events grant it


def test_unseen_and_mark_seen(deployed, sql):
    engine = deployed(COUNT_RULE)
    seed_comments(sql, [(7, day(d)) for d in (1, 2, 3, 4, 5)])
    run_batch(engine, 100)
    assert [(g["badge"], g["level"]) for g in engine.unseen(7)] == [
        ("commentator", "bronze"), ("commentator", "silver")]
    assert engine.mark_seen(7, "commentator", "bronze") == 1
    assert [g["level"] for g in engine.unseen(7)] == ["silver"]
    assert sql("SELECT plaudit.mark_seen(7)") == [(1,)]
    assert engine.unseen(7) == []
    assert engine.mark_seen(7) == 0


EVENTS_YAML = """
    events:
      comment_created: {table: comments, on: insert, user: author_id, at: created_at}
      comment_edited: {table: comments, on: update, user: author_id}
      comment_deleted: {table: public.comments, on: delete, user: author_id, at: created_at}
"""


def test_triggers_capture_inserts_updates_and_deletes(project, engine_for, sql):
    project.write("plaudit.yaml", EVENTS_YAML)
    engine = engine_for(project)
    assert engine.configure() == [
        {"event": "comment_created", "table_name": "comments", "change": "installed"},
        {"event": "comment_edited", "table_name": "comments", "change": "installed"},
        {"event": "comment_deleted", "table_name": "comments", "change": "installed"},
    ]
    assert [row["change"] for row in engine.configure()] == ["unchanged"] * 3
    sql("INSERT INTO users (id, name, created_at) VALUES (7, 'a', now()), (8, 'b', now()), "
        "(9, 'c', now())")
    sql("INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 7, 'article', 'hello', now())")
    sql("INSERT INTO comments (id, post_id, author_id, body, created_at) "
        "VALUES (101, 1, 7, 'a', '2024-01-01'), (102, 1, 8, 'b', '2024-01-02')")
    sql("UPDATE comments SET body = 'edited' WHERE id = 101")
    sql("DELETE FROM comments WHERE id = 102")
    with pytest.raises(psycopg.errors.RaiseException):  # a rolled-back write is no event
        sql("DO $$ BEGIN INSERT INTO comments (post_id, author_id, body, created_at) "
            "VALUES (1, 9, 'c', now()); RAISE EXCEPTION 'app error'; END $$")
    events = sql("SELECT type, user_id, occurred_at = tracked_at, occurred_at::date::text, "
                 "payload ->> 'id', payload ->> 'body' FROM plaudit.event ORDER BY event_id")
    assert events == [
        ("comment_created", 7, False, "2024-01-01", "101", "a"),
        ("comment_created", 8, False, "2024-01-02", "102", "b"),
        ("comment_edited", 7, True, str(datetime.now(UTC).date()), "101", "edited"),
        ("comment_deleted", 8, False, "2024-01-02", "102", "b"),
    ]


def test_removing_a_mapping_removes_its_trigger(project, engine_for, sql):
    project.write("plaudit.yaml", EVENTS_YAML)
    engine_for(project).configure()
    project.write("plaudit.yaml", EVENTS_YAML.replace(
        "      comment_edited: {table: comments, on: update, user: author_id}\n", ""))
    assert engine_for(project).configure() == [
        {"event": "comment_created", "table_name": "comments", "change": "unchanged"},
        {"event": "comment_deleted", "table_name": "comments", "change": "unchanged"},
        {"event": "comment_edited", "table_name": "comments", "change": "removed"},
    ]
    assert sql("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'plaudit%' ORDER BY 1") == [
        ("plaudit_comment_created",), ("plaudit_comment_deleted",)]
    seed_comments(sql, [(7, day(1))], track=False)
    sql("UPDATE comments SET body = 'edited'")
    assert sql("SELECT type FROM plaudit.event") == [("comment_created",)]
    project.write("plaudit.yaml", "rules: rules\n")
    assert [r["change"] for r in engine_for(project).configure()] == ["removed", "removed"]
    assert sql("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'plaudit%'") == [(0,)]


def test_a_row_without_a_user_is_no_event_and_no_error(project, engine_for, sql):
    sql("CREATE TABLE app_things (id int, owner bigint)")
    project.write("plaudit.yaml", "events:\n  thing_made: {table: app_things, on: insert, "
                                  "user: owner}\n")
    engine_for(project).configure()
    sql("INSERT INTO app_things VALUES (1, NULL), (2, 5)")
    assert sql("SELECT type, user_id, payload FROM plaudit.event") == [
        ("thing_made", 5, {"id": 2, "owner": 5})]


@pytest.mark.parametrize("mapping, message", [
    ("{table: nowhere, on: insert, user: author_id}",
     "events.e: table nowhere does not exist"),
    ("{table: comments, on: insert, user: writer_id}",
     "events.e: table comments has no column writer_id"),
    ("{table: comments, on: insert, user: author_id, at: post_id}",
     "events.e: cannot cast type bigint to timestamp with time zone"),
])
def test_a_bad_mapping_is_refused_by_deploy(project, run_cli, mapping, message):
    project.write("plaudit.yaml", f"events:\n  e: {mapping}\n")
    result = run_cli(project, "deploy")
    assert (result.exit_code, result.stderr) == (2, f"Error: {message}\n")


def _wait_until(condition, what, seconds=15.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_follow_reconnects_when_its_connections_are_terminated(deployed, dsn, sql):
    engine = deployed(COUNT_RULE)
    listener = connect(dsn)
    waiting = threading.Event()
    messages: list[str] = []
    runner = Runner(engine, 100)
    errors: list[BaseException] = []

    def follow():
        try:
            runner.follow(listener, on_idle=waiting.set, reconnect=lambda: connect(dsn),
                          on_lost=messages.append)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        _wait_until(lambda: waiting.is_set() or errors, "the follower to wait for events")
        assert not errors
        pids = [engine.db.conn.info.backend_pid, listener.info.backend_pid]
        # what a server restart does to a session, done to both of the follower's
        assert sql("SELECT bool_and(pg_terminate_backend(pid)) FROM unnest(%s::int[]) AS pid",
                   [pids]) == [(True,)]
        _wait_until(lambda: "reconnected" in messages or errors, "the reconnection")
        assert not errors
        seed_comments(sql, [(7, day(d)) for d in (1, 2, 3)])
        _wait_until(lambda: pending(sql) == 0 or errors, "the events to be processed")
        assert grants(sql) == [(7, "commentator", "bronze", "", day(3))]
        assert engine.db.conn.info.backend_pid not in pids
    finally:
        runner.stopping = True
        sql("NOTIFY plaudit_event")  # wakes the follower from its wait
        thread.join(15)
    assert not thread.is_alive()
    assert not errors
    assert len(messages) == 2
    assert messages[0].startswith("connection lost: ")
    assert messages[0].endswith("; reconnecting in 0.5s")
    assert messages[1] == "reconnected"
    listener.close()


def test_follow_backs_off_while_the_server_is_away_and_stops_when_told(deployed, dsn, sql):
    engine = deployed(COUNT_RULE)
    listener = connect(dsn)
    messages: list[str] = []
    runner = Runner(engine, 100)
    attempts: list[float] = []

    def unreachable():
        attempts.append(time.monotonic())
        if len(attempts) >= 3:
            runner.stopping = True  # Ctrl-C while the server is still away
        raise ConnectionFailed("cannot connect to the server: Connection refused")

    sql("SELECT pg_terminate_backend(%s)", [listener.info.backend_pid])
    runner.follow(listener, reconnect=unreachable, on_lost=messages.append)
    assert messages == [
        "connection lost: terminating connection due to administrator command; "
        "reconnecting in 0.5s",
        "reconnecting failed: cannot connect to the server: Connection refused; "
        "trying again in 1s",
        "reconnecting failed: cannot connect to the server: Connection refused; "
        "trying again in 2s",
    ]
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert 1.0 <= gaps[0] < 1.5 and 2.0 <= gaps[1] < 2.5, gaps
    listener.close()


def test_follow_without_reconnect_still_ends_on_a_lost_connection(deployed, dsn, sql):
    engine = deployed(COUNT_RULE)
    listener = connect(dsn)
    sql("SELECT pg_terminate_backend(%s)", [listener.info.backend_pid])
    with pytest.raises(psycopg.OperationalError):
        Runner(engine, 100).follow(listener)
    listener.close()
