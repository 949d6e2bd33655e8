"""The leaderboards' maintained aggregates (plaudit.score, plaudit.score_count) equal a
recomputation from user_badge after any sequence of backfills, incremental runs, awards,
revokes, re-dated grants, changed points and a changed timezone (issue 14, "fast at scale");
and the boards read from them equal plain SQL over user_badge."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plaudit.model.rules import load_rules
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Event
from plaudit.runtime.jobs import status

RULES = {
    "helper": """
        slug: helper
        name: Helper
        kind: award
        levels:
          - {key: bronze, name: Bronze, points: %(bronze)d}
          - {key: silver, name: Silver, points: 30}
        query: |
          SELECT u.id AS user_id, u.created_at AS achieved_at, 'bronze' AS level
          FROM users AS u WHERE false
    """,
    "poster": """
        slug: poster
        name: Poster
        kind: count
        triggers: [post_created]
        levels:
          - {key: one, name: One, threshold: 1, points: 1}
          - {key: three, name: Three, threshold: 3, points: 4}
        query: |
          SELECT p.author_id AS user_id, p.created_at AS occurred_at
          FROM posts AS p
          WHERE {{ affected('p.author_id') }}
    """,
}
USERS = range(1, 7)
# moments around the month and year boundaries of Berlin and of UTC
MOMENTS = [
    datetime(2024, 12, 31, 23, 30, tzinfo=ZoneInfo("UTC")),  # 2025 in Berlin, 2024 in UTC
    datetime(2025, 1, 31, 23, 30, tzinfo=ZoneInfo("UTC")),  # February in Berlin
    datetime(2025, 2, 10, 12, 0, tzinfo=ZoneInfo("UTC")),
    datetime(2025, 3, 30, 0, 30, tzinfo=ZoneInfo("UTC")),
]

RECOMPUTED = """
    SELECT ub.user_id, p.period, p.period_start::text, sum(l.points)::bigint, count(*)::int,
           max(ub.achieved_at)
    FROM plaudit.user_badge AS ub
    JOIN plaudit.badge_level AS l ON l.badge = ub.badge AND l.key = ub.level
    CROSS JOIN LATERAL (VALUES
        ('all', timestamptz '-infinity'),
        ('month', date_trunc('month', ub.achieved_at, %(tz)s)),
        ('year', date_trunc('year', ub.achieved_at, %(tz)s))) AS p (period, period_start)
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
COUNTS = """
    SELECT period, period_start::text, measure, value, sum(users)
    FROM plaudit.score_count GROUP BY 1, 2, 3, 4 HAVING sum(users) <> 0 ORDER BY 1, 2, 3, 4
"""


def expected_counts(scores):
    counts: dict[tuple, int] = {}
    for _, period, start, points, badges, _ in scores:
        for measure, value in (("badges", badges), ("points", points)):
            key = (period, start, measure, value)
            counts[key] = counts.get(key, 0) + 1
    return sorted((*key, n) for key, n in counts.items())


def plain_board(scores, period, start, by):
    """Standard competition ranking over the recomputed scores, listed as the engine lists."""
    rows = [(u, points if by == "points" else badges, reached)
            for u, p, s, points, badges, reached in scores if (p, s) == (period, start)]
    rows.sort(key=lambda r: (-r[1], r[2], r[0]))
    return [(1 + sum(1 for other in rows if other[1] > value), user, value)
            for user, value, _ in rows]


def assert_consistent(engine, sql, tz, stride=1):
    scores = sql(RECOMPUTED, {"tz": tz})
    assert sql("SELECT user_id, period, period_start::text, points, badges, reached_at "
               "FROM plaudit.score ORDER BY 1, 2, 3") == scores
    assert sql(COUNTS) == expected_counts(scores)
    at = MOMENTS[1]
    for period in ("all", "month", "year"):
        start = sql("SELECT CASE WHEN %s = 'all' THEN timestamptz '-infinity' "
                    "ELSE date_trunc(%s, %s::timestamptz, %s) END::text",
                    (period, period, at, tz))[0][0]
        for by in ("points", "badges"):
            expected = plain_board(scores, period, start, by)
            board = [(r["rank"], r["user_id"], int(r["value"]))
                     for r in engine.leaderboard(by, period, at, limit=max(1, len(expected)))]
            assert board == expected, (period, by)
            for index, (rank, user, value) in list(enumerate(expected))[::stride]:
                place = engine.rank_of(user, by, period, at)
                above = expected[index - 1][1] if index else None
                below = expected[index + 1][1] if index + 1 < len(expected) else None
                assert (place["rank"], int(place["value"]), place["ranked"], place["above"],
                        place["below"]) == (rank, value, len(expected), above, below)


@pytest.fixture
def scored(project, engine_for, sql):
    def setup(tz="Europe/Berlin", bronze=10):
        project.write("plaudit.yaml", f"timezone: {tz}\n")
        for slug, text in RULES.items():
            project.write(f"rules/{slug}.yaml", text % {"bronze": bronze} if "%" in text
                          else text)
        engine = engine_for(project)
        deploy_rules(engine, project.rules())
        return engine
    sql("INSERT INTO users (id, name, created_at) SELECT g, 'u' || g, '2024-01-01' "
        "FROM generate_series(1, 6) AS g")
    return setup


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("award"), st.sampled_from(USERS), st.sampled_from(["bronze", "silver"]),
              st.sampled_from(MOMENTS)),
    st.tuples(st.just("revoke"), st.sampled_from(USERS)),
    st.tuples(st.just("post"), st.sampled_from(USERS), st.sampled_from(MOMENTS)),
    st.tuples(st.just("unpost"), st.sampled_from(USERS)),
    st.tuples(st.just("seen"), st.sampled_from(USERS)),
    st.tuples(st.just("points"), st.sampled_from([0, 10, 25])),
    st.tuples(st.just("timezone"), st.sampled_from(["Europe/Berlin", "UTC"])),
), min_size=1, max_size=12)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
# an earlier post re-dates a grant (an UPDATE); a level's points change; grants marked seen
@example(operations=[("post", 1, MOMENTS[2]), ("post", 1, MOMENTS[0]), ("unpost", 1)])
@example(operations=[("award", 2, "bronze", MOMENTS[0]), ("seen", 2), ("points", 25)])
def test_scores_equal_a_recomputation_after_any_sequence(scored, sql, operations):
    sql("TRUNCATE posts, plaudit.user_badge, plaudit.suppressed_grant CASCADE")
    sql("DELETE FROM plaudit.meta WHERE key = 'score_timezone'")
    tz, bronze = "Europe/Berlin", 10
    engine = scored(tz, bronze)
    for operation in operations:
        kind, *args = operation
        if kind == "award":
            user, level, at = args
            engine.award("helper", user, "test", level=level, achieved_at=at)
        elif kind == "revoke":
            engine.revoke("helper", args[0], "test")
        elif kind == "post":  # an incremental run for the new post
            user, at = args
            sql("INSERT INTO posts (author_id, kind, title, created_at) "
                "VALUES (%s, 'article', 't', %s)", (user, at))
            engine.check([Event("post_created", user, at)])
        elif kind == "unpost":  # the earliest post goes: a backfill re-dates or keeps grants
            sql("DELETE FROM posts WHERE id = (SELECT id FROM posts WHERE author_id = %s "
                "ORDER BY created_at, id LIMIT 1)", (args[0],))
            engine.backfill([r for r in engine_rules(scored, engine) if r.slug == "poster"])
        elif kind == "seen":
            engine.mark_seen(args[0])
        elif kind == "points":
            bronze = args[0]
            engine = scored(tz, bronze)
        else:
            tz = args[0]
            engine = scored(tz, bronze)
        engine.db.conn.commit()
    assert_consistent(engine, sql, tz)


def engine_rules(scored, engine):
    return load_rules(engine.config.rules_dir, root=engine.config.project_dir)


def test_a_backfill_of_thousands_of_users_keeps_the_scores(scored, sql):
    """More than a thousand users in one statement: the table-lock path of score_refresh."""
    engine = scored()
    sql("INSERT INTO users (id, name, created_at) SELECT g, 'u' || g, '2024-01-01' "
        "FROM generate_series(7, 1600) AS g")
    sql("INSERT INTO posts (author_id, kind, title, created_at) "
        "SELECT 1 + g % 1600, 'article', 't', timestamptz '2025-01-01' + g * interval '1 hour' "
        "FROM generate_series(1, 4000) AS g")
    results = engine.backfill(engine_rules(scored, engine))
    assert all(r.status == "ok" for r in results)
    assert sql("SELECT count(DISTINCT user_id) FROM plaudit.user_badge")[0][0] == 1600
    engine.award("helper", 5, "test", level="silver", achieved_at=MOMENTS[0])
    engine.db.conn.commit()
    assert_consistent(engine, sql, "Europe/Berlin", stride=97)
    sql("TRUNCATE plaudit.user_badge CASCADE")  # a reset empties the boards
    assert sql("SELECT count(*) FROM plaudit.score")[0][0] == 0
    assert sql(COUNTS) == []


def test_boards_outside_the_scores_timezone_are_computed(scored, sql):
    """A caller asking for another timezone than the scores are cut in gets the same answer
    as plain SQL (computed from user_badge, not from the scores)."""
    engine = scored("Europe/Berlin")
    for user, at in ((1, MOMENTS[0]), (2, MOMENTS[0] + timedelta(hours=2)), (3, MOMENTS[1])):
        engine.award("helper", user, "test", level="bronze", achieved_at=at)
    engine.db.conn.commit()
    rows = sql("SELECT user_id, value FROM plaudit.leaderboard('points', 'year', "
               "'2024-06-01', 'UTC', 10, 0)")
    assert rows == [(1, 10)]  # 23:30 UTC on New Year's Eve is 2024 in UTC
    rows = sql("SELECT user_id, value FROM plaudit.leaderboard('points', 'year', "
               "'2024-06-01', 'Europe/Berlin', 10, 0)")
    assert rows == []  # and 2025 in Berlin


def test_transactions_granting_to_the_same_users_in_opposite_orders_both_commit(scored, dsn, sql):
    """Scores are recomputed when a transaction commits, its locks taken in one sorted sweep:
    two transactions granting to users 1 and 2 in opposite orders do not deadlock (they did
    when each statement locked its users' scores)."""
    scored()
    award = "SELECT plaudit.award_badge(%s, 'helper', %s, '', 'test', %s)"
    # a lock wait fails the test in seconds instead of hanging it
    first, second = (psycopg.connect(dsn, options="-c lock_timeout=5s") for _ in range(2))
    with first, second:
        first.execute(award, ("1", "bronze", MOMENTS[0]))
        second.execute(award, ("2", "silver", MOMENTS[0]))
        first.execute(award, ("2", "bronze", MOMENTS[1]))
        second.execute(award, ("1", "silver", MOMENTS[1]))
        done = threading.Thread(target=first.commit)
        done.start()
        second.commit()
        done.join(timeout=30)
    assert sql("SELECT user_id, points FROM plaudit.score WHERE period = 'all' ORDER BY 1") == [
        (1, 40), (2, 40)]
    assert sql("SELECT count(*) FROM plaudit.score_pending")[0][0] == 0


def test_an_app_role_checking_and_committing_keeps_the_scores(scored, dsn, sql):
    """The deferred refresh runs as the role that commits (PostgreSQL before 18): an app role
    with EXECUTE on plaudit.check alone, whose check grants, commits, and the scores follow."""
    scored()
    app = f"app_{dsn.rsplit('/', 1)[1]}"
    sql(f'CREATE ROLE "{app}" NOLOGIN')
    try:
        sql(f'GRANT SELECT, INSERT ON posts TO "{app}"')
        sql(f'GRANT USAGE ON SCHEMA plaudit TO "{app}"')
        sql(f'GRANT EXECUTE ON FUNCTION plaudit.check(jsonb) TO "{app}"')
        with psycopg.connect(dsn) as conn:
            conn.execute(f'SET ROLE "{app}"')
            conn.execute("INSERT INTO posts (author_id, kind, title, created_at) "
                         "VALUES (3, 'article', 't', %s)", (MOMENTS[2],))
            granted = conn.execute(
                "SELECT badge, level FROM plaudit.check(%s::jsonb)",
                ('[{"type": "post_created", "user_id": 3}]',)).fetchall()
            assert granted == [("poster", "one")]
            conn.commit()
        assert sql("SELECT points FROM plaudit.score WHERE user_id = 3 AND period = 'all'") == [
            (1,)]
    finally:
        sql(f'DROP OWNED BY "{app}"')
        sql(f'DROP ROLE "{app}"')


def test_a_change_of_points_racing_a_grant_leaves_the_right_score(scored, dsn, sql):
    """A grant committing while a deploy changes its level's points recomputes after the
    deploy, with the new points (it used the old ones, for a user the deploy did not note)."""
    scored()
    first, second = (psycopg.connect(dsn, options="-c lock_timeout=20s") for _ in range(2))
    with first, second:
        first.execute("SELECT plaudit.award_badge('1', 'helper', 'bronze', '', 'test', %s)",
                      (MOMENTS[0],))
        second.execute("UPDATE plaudit.badge_level SET points = 99 "
                       "WHERE badge = 'helper' AND key = 'bronze'")
        done = threading.Thread(target=first.commit)
        done.start()
        time.sleep(0.5)  # the grant's commit now waits for the change of points
        second.commit()
        done.join(timeout=30)
    assert sql("SELECT points FROM plaudit.score WHERE user_id = 1 AND period = 'all'") == [(99,)]


def test_a_backfill_of_several_rules_recomputes_each_user_once_at_its_end(scored, sql):
    """Each rule's transaction defers its users' scores (plaudit.score_stale); the backfill
    recomputes them when every rule ran, and a backfill that died half-way leaves them for
    `plaudit status` to report and the next backfill to recompute."""
    engine = scored()
    rules = {rule.slug: rule for rule in engine_rules(scored, engine)}
    sql("INSERT INTO posts (author_id, kind, title, created_at) "
        "SELECT 1 + g % 6, 'article', 't', timestamptz '2025-01-01' + g * interval '1 day' "
        "FROM generate_series(1, 20) AS g")
    # a backfill that dies after its first rule committed, before catching up
    engine.run_rule(rules["poster"], "backfill", defer_scores=True)
    assert sql("SELECT count(*) FROM plaudit.user_badge")[0][0] > 0
    assert sql("SELECT count(*) FROM plaudit.score")[0][0] == 0
    assert sql("SELECT count(*) FROM plaudit.score_stale")[0][0] == 6
    sql("UPDATE plaudit.score_stale SET since = now() - interval '1 hour'")
    report = status(engine, 300.0)
    assert report.scores_waiting == 6
    assert any("leaderboard scores of 6 users" in line for line in report.attention)

    results = engine.backfill(list(rules.values()), jobs=2)
    assert all(r.status == "ok" for r in results)
    assert sql("SELECT count(*) FROM plaudit.score_stale")[0][0] == 0
    assert_consistent(engine, sql, "Europe/Berlin")
    assert status(engine, 300.0).scores_waiting == 0


def test_the_nightly_job_recomputes_the_scores_its_backfills_deferred(scored, dsn, sql):
    engine = scored()
    sql("INSERT INTO posts (author_id, kind, title, created_at) "
        "SELECT 1 + g % 6, 'article', 't', timestamptz '2025-01-01' + g * interval '1 day' "
        "FROM generate_series(1, 20) AS g")
    engine.award("helper", 2, "test", level="silver", achieved_at=MOMENTS[0])
    engine.db.conn.commit()
    sql("INSERT INTO plaudit.score_stale (user_id) VALUES (4)")  # left by a dead backfill
    sql("UPDATE plaudit.badge SET due = 'changed'")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL plaudit.job_nightly()")
    assert sql("SELECT badge, status FROM plaudit.run WHERE mode = 'backfill' ORDER BY 1") == [
        ("helper", "ok"), ("poster", "ok")]
    assert sql("SELECT count(*) FROM plaudit.score_stale") == [(0,)]
    assert_consistent(engine, sql, "Europe/Berlin")


def test_a_catch_up_never_takes_a_user_whose_deferred_grants_are_still_committing(
        scored, dsn, sql):
    """A deferred transaction that found its user already waiting (score_stale) keeps that
    row locked until it commits: a concurrent catch-up skips the user instead of recomputing
    them without the grants, and dropping them from the list."""
    engine = scored()
    sql("INSERT INTO plaudit.score_stale (user_id) VALUES (3)")  # e.g. an earlier rule's
    with psycopg.connect(dsn) as granting, psycopg.connect(dsn, autocommit=True) as other:
        granting.execute("SELECT plaudit.defer_scores()")
        granting.execute("SELECT * FROM plaudit.award_badge(3, 'helper', 'bronze', '', 'test', %s)",
                         [MOMENTS[2]])
        granting.execute("SET CONSTRAINTS ALL IMMEDIATE")  # its commit-time trigger, now
        other.execute("SELECT plaudit.score_catch_up(100)")
        granting.commit()
    engine.catch_up_scores()
    assert_consistent(engine, sql, "Europe/Berlin")
