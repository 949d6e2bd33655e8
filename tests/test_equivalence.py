"""Equivalence: processing a history's events incrementally, in any batch split, with the
backfills the jobs would run, gives exactly what a backfill computes: the same grants (user,
badge, level, scope, achieved_at) and the same progress values, for every bundled rule.

The history is app writes to the demo tables, captured as events by the triggers that the
bundled plaudit.yaml configures; runs of random batch sizes are interleaved with the writes,
and rows arrive out of time order (late events) and with tied timestamps. Besides, it holds
grants made to someone other than the event's user (influencer, popular_author) and a
composite over them (`crowd_pleaser`, below), manual awards and revocations, and a redeploy
of commentator with lower thresholds midway (due until the nightly job backfills it).

Two comparisons: a complete backfill run on top of the incremental state changes nothing
(no grant added, no date moved, no progress changed); and, when nothing was revoked (a
revocation's composites keep their grants: grants are never downgraded), one backfill from
scratch (rule grants and progress deleted; manual grants and revocations kept) computes the
same state.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.runner import run_batch

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
USERS = (1, 2, 3, 4)

users = st.sampled_from(USERS)
# few active users, so that thresholds (10 comments, 100 reads) are reached and crossed again
active = st.sampled_from(USERS[:2])
# hours, not seconds: rows of one history often share a timestamp
hours = st.integers(0, 24 * 60)
steps = st.integers(0, 3)  # hours between the rows of a burst; 0 makes ties

comments = st.tuples(st.just("comments"), active, st.integers(1, 15), hours, steps)
# comments by anyone on the first post: the post author's influencer grants
replies = st.tuples(st.just("comments"), users, st.integers(1, 3), hours, steps)
runs = st.tuples(st.just("run"), st.integers(1, 40))
actions = st.one_of(
    st.tuples(st.just("post"), users, st.sampled_from(["article", "question"]), hours),
    comments,
    comments,
    st.tuples(st.just("reads"), st.integers(0, 2), users, st.integers(1, 60), hours, steps),
    st.tuples(st.just("entry"), users, st.integers(1, 2), st.integers(1, 8), hours),
    replies,
    runs,
    runs,
    st.tuples(st.just("award"), users, st.sampled_from(
        [("influencer", "bronze"), ("influencer", "silver"), ("first_post", "first"),
         ("commentator", "bronze")]), hours),
    st.tuples(st.just("revoke"), users, st.sampled_from(
        ["influencer", "commentator", "first_post", "popular_author"])),
    st.just(("redeploy",)),
)

# A composite over badges granted to someone other than the event's user, triggered only by
# the grants it reads.
CROWD_PLEASER = """
slug: crowd_pleaser
name: Crowd Pleaser
description: Noticed by readers and commenters.
kind: count
triggers: []
levels:
  - {key: bronze, name: Noticed, threshold: 1, points: 5}
  - {key: silver, name: Popular, threshold: 3, points: 10}
query: |
  SELECT b.user_id, b.achieved_at AS occurred_at FROM {{ badge('influencer') }} AS b
  WHERE {{ affected('b.user_id') }}
  UNION ALL
  SELECT b.user_id, b.achieved_at AS occurred_at FROM {{ badge('popular_author') }} AS b
  WHERE {{ affected('b.user_id') }}
"""


@pytest.fixture
def bundled(demo_project, engine_for, sql):
    """The bundled rules, a composite over other users' grants, and plaudit.yaml (its
    events: capture the demo tables), deployed."""
    shutil.copy(REPO / "plaudit.yaml", demo_project.path / "plaudit.yaml")
    demo_project.write("rules/crowd_pleaser.yaml", CROWD_PLEASER)
    engine = engine_for(demo_project)
    deploy_rules(engine, demo_project.rules())
    return engine, demo_project


COMMENTATOR = (REPO / "rules" / "commentator.yaml").read_text()
LOWERED = COMMENTATOR.replace("threshold: 10,", "threshold: 4,").replace(
    "threshold: 100,", "threshold: 12,")


def reset(sql, engine, project):
    sql("TRUNCATE challenge_entries, challenges, article_reads, comments, posts, users, "
        "plaudit.user_badge, plaudit.user_progress, plaudit.event, plaudit.run, "
        "plaudit.suppressed_grant, plaudit.grant_log RESTART IDENTITY")
    project.write("rules/commentator.yaml", COMMENTATOR)
    deploy_rules(engine, project.rules())
    # a site whose rules are up to date: nothing is due
    sql("UPDATE plaudit.badge SET dirty = false, due = NULL")
    sql("INSERT INTO users (id, name, created_at) SELECT u, 'u' || u, '2023-01-01' "
        "FROM unnest(%s::bigint[]) AS u", [list(USERS)])
    sql("INSERT INTO challenges (id, title, starts_at, ends_at) VALUES "
        "(1, 'ended', '2023-12-01', '2024-02-01'), (2, 'running', '2024-01-15', '2030-01-01')")


def apply(sql, engine, project, action):
    kind, *args = action
    if kind == "post":
        author, post_kind, h = args
        sql("INSERT INTO posts (author_id, kind, title, created_at) VALUES (%s, %s, 't', %s)",
            [author, post_kind, T0 + timedelta(hours=h)])
    elif kind == "comments":
        author, n, h, step = args
        sql("INSERT INTO posts (author_id, kind, title, created_at) "
            "SELECT 1, 'question', 'base', %s WHERE NOT EXISTS (SELECT FROM posts)", [T0])
        sql("INSERT INTO comments (post_id, author_id, body, created_at) "
            "SELECT (SELECT min(id) FROM posts), %s, 'x', %s + make_interval(hours => g * %s) "
            "FROM generate_series(0, %s - 1) AS g", [author, T0 + timedelta(hours=h), step, n])
    elif kind == "reads":
        article, reader, n, h, step = args
        sql("INSERT INTO article_reads (post_id, reader_id, read_at) "
            "SELECT a.id, %s, %s + make_interval(hours => g * %s) "
            "FROM (SELECT id FROM posts WHERE kind = 'article' ORDER BY id "
            "      OFFSET %s %% greatest((SELECT count(*) FROM posts WHERE kind = 'article'), 1) "
            "      LIMIT 1) AS a, generate_series(0, %s - 1) AS g",
            [reader, T0 + timedelta(hours=h), step, article, n])
    elif kind == "entry":
        user, challenge, rank, h = args
        sql("INSERT INTO challenge_entries (challenge_id, user_id, score, submitted_at, "
            "final_rank) VALUES (%s, %s, %s, %s, CASE WHEN %s = 1 THEN %s END) "
            "ON CONFLICT DO NOTHING",
            [challenge, user, 100 - rank, T0 + timedelta(hours=h), challenge, rank])
    elif kind == "award":
        user, (badge, level), h = args
        engine.award(badge, user, "property", level=level, achieved_at=T0 + timedelta(hours=h))
    elif kind == "revoke":
        user, badge = args
        engine.revoke(badge, user, "property")
    elif kind == "redeploy":
        project.write("rules/commentator.yaml", LOWERED)
        deploy_rules(engine, project.rules())
    else:
        (batch_size,) = args
        run_batch(engine, batch_size)


def state(sql):
    """Every grant (rule and manual) with its date, and every progress value."""
    return (
        sql("SELECT user_id, badge, level, scope, achieved_at, source FROM plaudit.user_badge "
            "ORDER BY 1, 2, 3, 4"),
        sql("SELECT user_id, badge, scope, value, next_level FROM plaudit.user_progress "
            "ORDER BY 1, 2, 3"),
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(actions, max_size=24), final_batch=st.integers(1, 50))
@example(  # every triggered bundled rule grants something, across several batches
    history=[("comments", 2, 12, 30, 1), ("run", 5), ("post", 3, "article", 10),
             ("reads", 0, 1, 60, 20, 0), ("run", 7), ("reads", 0, 2, 50, 5, 1),
             ("comments", 2, 3, 0, 0)],
    final_batch=13,
)
@example(  # user 1's influencer grant comes from user 3's comments: crowd_pleaser follows
    history=[("comments", 3, 1, 5, 0), ("run", 40)], final_batch=1,
)
@example(  # manual awards, a revocation and a lowered threshold, between runs
    history=[("comments", 1, 5, 10, 1), ("run", 3), ("award", 2, ("influencer", "silver"), 4),
             ("revoke", 1, "commentator"), ("redeploy",), ("comments", 1, 2, 0, 0),
             ("run", 40)],
    final_batch=7,
)
@example(  # user 4's influencer grants revoked: crowd_pleaser's progress for 4 goes
    history=[("comments", 3, 3, 955, 1), ("redeploy",), ("comments", 4, 2, 500, 3), ("run", 39),
             ("award", 4, ("influencer", "silver"), 98), ("revoke", 4, "influencer"),
             ("comments", 1, 15, 522, 0)],
    final_batch=40,
)
def test_incremental_runs_with_the_jobs_equal_a_backfill(bundled, sql, dsn, history,
                                                         final_batch):
    engine, project = bundled
    reset(sql, engine, project)
    for action in history:
        apply(sql, engine, project, action)
    while run_batch(engine, final_batch).events:
        pass
    assert sql("SELECT badge, message FROM plaudit.run WHERE status <> 'ok'") == []
    # the backfills the nightly job runs: due (new or changed), dirty and untriggered rules
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL plaudit.job_nightly()")
    incremental = state(sql)

    # a complete backfill on top finds nothing to add, move or correct
    results = engine.backfill(project.rules())
    assert [(r.slug, r.status, r.granted, r.moved) for r in results if r.status != "ok"
            or r.granted or r.moved] == []
    assert state(sql) == incremental

    # from scratch (manual grants and revocations are decisions, kept)
    if any(action[0] == "revoke" for action in history):
        return
    sql("DELETE FROM plaudit.user_badge WHERE source = 'rule'")
    sql("TRUNCATE plaudit.user_progress")
    engine.backfill(project.rules())
    assert state(sql) == incremental


def test_the_property_covers_the_bundled_rules(bundled):
    _, project = bundled
    slugs = {r.slug for r in project.rules()}
    assert {"commentator", "first_post", "popular_author", "influencer", "crowd_pleaser",
            "all_rounder"} <= slugs
