"""Equivalence: processing a history's events incrementally, in any batch split, gives the same
grants (user, badge, level, scope, achieved_at) as one backfill, for every bundled rule that
events trigger (a rule without triggers runs in backfill only).

The history is app writes to the demo tables, captured as events by the triggers that the
bundled plaudit.yaml configures; runs of random batch sizes are interleaved with the writes,
and rows arrive out of time order (late events) and with tied timestamps.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plaudit.runner import run_batch

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
runs = st.tuples(st.just("run"), st.integers(1, 40))
actions = st.one_of(
    st.tuples(st.just("post"), users, st.sampled_from(["article", "question"]), hours),
    comments,
    comments,
    st.tuples(st.just("reads"), st.integers(0, 2), users, st.integers(1, 60), hours, steps),
    st.tuples(st.just("entry"), users, st.integers(1, 2), st.integers(1, 8), hours),
    runs,
    runs,
)


@pytest.fixture
def bundled(demo_project, engine_for, sql):
    """The bundled rules and plaudit.yaml (its events: capture the demo tables), deployed."""
    shutil.copy(REPO / "plaudit.yaml", demo_project.path / "plaudit.yaml")
    engine = engine_for(demo_project)
    engine.deploy(demo_project.rules())
    triggered = [r for r in demo_project.rules() if r.triggers and r.enabled]
    return engine, triggered


def reset(sql):
    sql("TRUNCATE challenge_entries, challenges, article_reads, comments, posts, users, "
        "plaudit.user_badge, plaudit.user_progress, plaudit.event, plaudit.run RESTART IDENTITY")
    sql("UPDATE plaudit.badge SET dirty = false")
    sql("INSERT INTO users (id, name, created_at) SELECT u, 'u' || u, '2023-01-01' "
        "FROM unnest(%s::bigint[]) AS u", [list(USERS)])
    sql("INSERT INTO challenges (id, title, starts_at, ends_at) VALUES "
        "(1, 'ended', '2023-12-01', '2024-02-01'), (2, 'running', '2024-01-15', '2030-01-01')")


def apply(sql, engine, action):
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
    else:
        (batch_size,) = args
        run_batch(engine, batch_size)


def grants(sql, slugs):
    return sql("SELECT user_id, badge, level, scope, achieved_at FROM plaudit.user_badge "
               "WHERE badge = ANY(%s) ORDER BY 1, 2, 3, 4", [slugs])


@settings(
    max_examples=25,
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
def test_incremental_runs_in_any_batch_split_equal_one_backfill(bundled, sql, history,
                                                                final_batch):
    engine, rules = bundled
    slugs = [rule.slug for rule in rules]
    reset(sql)
    for action in history:
        apply(sql, engine, action)
    while run_batch(engine, final_batch).events:
        pass
    incremental = grants(sql, slugs)
    assert sql("SELECT badge, message FROM plaudit.run WHERE status <> 'ok'") == []

    sql("TRUNCATE plaudit.user_badge, plaudit.user_progress")
    results = engine.backfill(rules)
    assert [r.status for r in results] == ["ok"] * len(rules)
    assert incremental == grants(sql, slugs)


def test_the_property_covers_the_bundled_rules(bundled):
    _, rules = bundled
    assert {"commentator", "first_post", "popular_author"} <= {r.slug for r in rules}
