"""Backfill against a real PostgreSQL: exact grants, exact dates, idempotence, isolation."""

from __future__ import annotations

import threading

import psycopg
import pytest

from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Engine
from plaudit.runtime.runner import run_batch
from sample_rules import commentator_rule

COUNT_RULE = commentator_rule(3, 5)


def seed_comments(sql, rows):
    """rows: (author_id, created_at); users and one post are created as needed."""
    authors = sorted({a for a, _ in rows} | {1})
    sql(
        "INSERT INTO users (id, name, created_at) SELECT u, 'u' || u, '2020-01-01' "
        "FROM unnest(%s::bigint[]) AS u ON CONFLICT DO NOTHING",
        [authors],
    )
    sql(
        "INSERT INTO posts (id, author_id, kind, title, created_at) "
        "VALUES (1, 1, 'article', 'hello', '2020-01-01') ON CONFLICT DO NOTHING"
    )
    for author, at in rows:
        sql(
            "INSERT INTO comments (post_id, author_id, body, created_at) VALUES (1, %s, 'x', %s)",
            [author, at],
        )


def grants(sql, badge=None):
    return sql(
        "SELECT user_id, badge, level, scope, achieved_at::text FROM plaudit.user_badge "
        "WHERE %s::text IS NULL OR badge = %s ORDER BY 1, 2, 3, 4",
        [badge, badge],
    )


@pytest.fixture
def count_project(project, engine_for):
    project.write("rules/commentator.yaml", COUNT_RULE)
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    return project, engine


def test_count_grants_every_level_crossed_with_the_date_of_the_nth_row(count_project, sql):
    project, engine = count_project
    seed_comments(
        sql,
        [
            (7, "2024-01-05 10:00+00"),
            (7, "2024-01-01 10:00+00"),
            (7, "2024-01-03 10:00+00"),
            (7, "2024-01-04 10:00+00"),
            (7, "2024-01-02 10:00+00"),  # 5 rows, out of order
            (8, "2024-02-01 00:00+00"),
            (8, "2024-02-02 00:00+00"),  # 2: below bronze
        ],
    )
    [result] = engine.backfill(project.rules())
    assert (result.status, result.granted, dict(result.levels)) == (
        "ok",
        2,
        {"bronze": 1, "silver": 1},
    )
    assert grants(sql) == [
        (7, "commentator", "bronze", "", "2024-01-03 10:00:00+00"),
        (7, "commentator", "silver", "", "2024-01-05 10:00:00+00"),
    ]
    assert sql("SELECT user_id, value, next_level FROM plaudit.user_progress ORDER BY 1") == [
        (7, 5, None),
        (8, 2, "bronze"),
    ]


def test_ties_in_occurred_at_give_the_tied_date(count_project, sql):
    project, engine = count_project
    seed_comments(sql, [(7, "2024-01-01 00:00+00")] + [(7, "2024-01-02 00:00+00")] * 3)
    engine.backfill(project.rules())
    assert grants(sql) == [(7, "commentator", "bronze", "", "2024-01-02 00:00:00+00")]


def test_backfill_matches_an_independent_count_on_demo_data(demo_project, engine_for, sql):
    sql("SELECT * FROM demo_generate(300, 20000)")
    engine = engine_for(demo_project)
    deploy_rules(engine, demo_project.rules())
    engine.backfill(demo_project.rules())
    expected = sql("""
        WITH numbered AS (
            SELECT author_id, created_at,
                   row_number() OVER (PARTITION BY author_id ORDER BY created_at) AS n
            FROM comments)
        SELECT author_id, 'commentator', l.level, '', created_at::text
        FROM numbered
        JOIN (VALUES ('bronze', 10), ('silver', 100), ('gold', 1000)) AS l (level, threshold)
          ON n = l.threshold
        ORDER BY 1, 2, 3""")
    assert len(expected) > 100
    assert grants(sql, "commentator") == expected
    ties = sql(
        "SELECT count(*) FROM (SELECT author_id, created_at FROM comments "
        "GROUP BY 1, 2 HAVING count(*) > 1) AS t"
    )[0][0]
    assert ties > 0, "the demo data must exercise ties"


def test_second_backfill_grants_nothing_and_changes_nothing(demo_project, engine_for, sql):
    sql("SELECT * FROM demo_generate(200, 10000)")
    engine = engine_for(demo_project)
    deploy_rules(engine, demo_project.rules())
    first = engine.backfill(demo_project.rules())
    before = sql("SELECT * FROM plaudit.user_badge ORDER BY 1, 2, 3, 4")
    progress = sql("SELECT * FROM plaudit.user_progress ORDER BY 1, 2, 3")
    second = engine.backfill(demo_project.rules())
    slugs = [r.slug for r in demo_project.rules()]
    assert {"commentator", "first_post", "top5_challenge", "all_rounder"} <= set(slugs)
    assert all(r.granted > 0 for r in first), [r.slug for r in first if not r.granted]
    assert [r.granted for r in second] == [0] * len(slugs)
    assert sql("SELECT * FROM plaudit.user_badge ORDER BY 1, 2, 3, 4") == before
    assert sql("SELECT * FROM plaudit.user_progress ORDER BY 1, 2, 3") == progress
    # one run row per rule and backfill, in run order: composite rules after what they read
    assert [r.slug for r in first] == [s for s in slugs if s != "all_rounder"] + ["all_rounder"]
    runs = sql("SELECT badge, status, granted FROM plaudit.run ORDER BY run_id")
    # the first in run order (nothing measured yet); the second starts the rules that took
    # longest in the first, but still the composite last, after the rules it reads
    assert runs[:len(slugs)] == [(r.slug, "ok", r.granted) for r in first]
    assert sorted(runs[len(slugs):]) == sorted((r.slug, "ok", 0) for r in second)
    second_order = [badge for badge, _, _ in runs[len(slugs):]]
    [reads] = sql("SELECT definition -> 'depends_on' FROM plaudit.badge "
                  "WHERE slug = 'all_rounder'")[0]
    assert reads and all(
        second_order.index(slug) < second_order.index("all_rounder") for slug in reads)
    assert runs[len(slugs)][0] != slugs[0], "the longest rule of the first backfill goes first"


def test_backfill_is_quiet_and_records_the_run(count_project, sql):
    project, engine = count_project
    seed_comments(sql, [(7, f"2024-01-0{d} 00:00+00") for d in range(1, 4)])
    [result] = engine.backfill(project.rules())
    assert sql(
        "SELECT source, run_id = %s, seen_at IS NOT NULL FROM plaudit.user_badge", [result.run_id]
    ) == [("rule", True, True)]
    [announced] = engine.backfill(project.rules(), announce=True)
    assert announced.granted == 0


def test_announced_backfill_leaves_grants_unseen(count_project, sql):
    project, engine = count_project
    # recent: grants older than notify.max_age (2 days) stay quiet even when announced
    recent = sql("SELECT now() - interval '1 hour' * g FROM generate_series(1, 3) AS g")
    seed_comments(sql, [(7, at) for (at,) in recent])
    engine.backfill(project.rules(), announce=True)
    assert sql("SELECT seen_at FROM plaudit.user_badge") == [(None,)]


def test_dry_run_counts_and_writes_nothing(count_project, sql):
    project, engine = count_project
    seed_comments(sql, [(7, f"2024-01-0{d} 00:00+00") for d in range(1, 6)])
    [result] = engine.backfill(project.rules(), dry_run=True)
    assert dict(result.levels) == {"bronze": 1, "silver": 1}
    assert sql("SELECT count(*) FROM plaudit.user_badge") == [(0,)]
    assert sql("SELECT count(*) FROM plaudit.run") == [(0,)]
    assert sql("SELECT count(*) FROM plaudit.user_progress") == [(0,)]


def test_a_late_event_moves_a_grant_to_its_real_earlier_date(count_project, sql):
    project, engine = count_project
    seed_comments(sql, [(7, f"2024-01-0{d} 00:00+00") for d in (3, 4, 5)])
    engine.backfill(project.rules())
    seed_comments(sql, [(7, "2024-01-01 00:00+00")])  # imported late, happened first
    [result] = engine.backfill(project.rules())
    assert result.granted == 0
    assert grants(sql) == [(7, "commentator", "bronze", "", "2024-01-04 00:00:00+00")]


def test_init_twice_changes_nothing(dsn, demo_project, engine_for, sql):
    def snapshot():
        return sql("""
            SELECT 'rel', c.relname || ':' || coalesce(pg_get_indexdef(c.oid), '')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'plaudit'
            UNION ALL
            SELECT 'col', table_name || '.' || column_name || ' ' || data_type
            FROM information_schema.columns WHERE table_schema = 'plaudit'
            UNION ALL
            SELECT 'fn', pg_get_functiondef(p.oid) FROM pg_proc p
            JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'plaudit'
            UNION ALL
            SELECT 'con', conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
            WHERE connamespace = 'plaudit'::regnamespace
            UNION ALL
            SELECT 'meta', key || '=' || value FROM plaudit.meta
            ORDER BY 1, 2""")

    engine = engine_for(demo_project)
    engine.init()
    deploy_rules(engine, demo_project.rules())
    before = snapshot()
    engine.init()
    plan = deploy_rules(engine, demo_project.rules())
    assert {c.slug: c.status for c in plan.changes} == {
        rule.slug: "unchanged" for rule in demo_project.rules()}
    assert snapshot() == before
    assert len(before) > 30


@pytest.mark.parametrize(
    "user_id_type, user_id",
    [("text", "alice"), ("uuid", "4f0c1b6e-0d1e-4f55-9d8b-2a7c1f0e9a11"), ("integer", "7")],
)
def test_user_id_types(project, engine_for, sql, user_id_type, user_id):
    project.write("plaudit.yaml", f"schema: badges\nuser_id_type: {user_id_type}\n")
    project.write(
        "rules/hello.yaml",
        f"""
        slug: hello
        name: Hello
        kind: award
        query: |
          SELECT '{user_id}'::{user_id_type} AS user_id, timestamptz '2024-01-01' AS achieved_at
    """,
    )
    engine = engine_for(project)
    engine.init()
    deploy_rules(engine, project.rules())
    [result] = engine.backfill(project.rules())
    assert result.status == "ok", result.message
    assert sql("SELECT user_id::text, level FROM badges.user_badge") == [(user_id, "default")]
    assert sql(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'badges' "
        "AND table_name = 'user_badge' AND column_name = 'user_id'"
    ) == [({"text": "text", "uuid": "uuid", "integer": "integer"}[user_id_type],)]


def test_changing_the_user_id_type_of_an_existing_schema_is_refused(project, engine_for):
    project.write("plaudit.yaml", "user_id_type: text\n")
    with pytest.raises(Exception) as err:
        engine_for(project).init()
    assert str(err.value) == (
        "applying 001_user_id_type.sql: plaudit.yaml says user_id_type: text, but schema plaudit "
        "was created with bigint\nHINT: changing the user id type needs a data migration; set "
        "user_id_type back to bigint"
    )


def test_award_rows_for_the_same_grant_keep_the_earliest_date(project, engine_for, sql):
    project.write(
        "rules/early.yaml",
        """
        slug: early
        name: Early Bird
        kind: award
        query: |
          SELECT v.user_id, v.achieved_at, v.meta FROM (VALUES (1::bigint, timestamptz '2024-03-01', '{"n": 2}'::jsonb),
                                (1, timestamptz '2024-01-01', '{"n": 1}'),
                                (1, timestamptz '2024-02-01', '{"n": 3}')) AS v (user_id, achieved_at, meta)
    """,
    )
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    engine.backfill(project.rules())
    assert sql("SELECT achieved_at::date::text, meta FROM plaudit.user_badge") == [
        ("2024-01-01", {"n": 1})
    ]


def test_a_failing_rule_is_recorded_marked_dirty_and_does_not_stop_the_others(
    count_project, sql, engine_for
):
    project, _ = count_project
    project.write(
        "rules/broken.yaml",
        """
        slug: broken
        name: Broken
        kind: award
        query: |
          SELECT 1::bigint AS user_id, now() AS achieved_at WHERE 1 / 0 = 1
    """,
    )
    seed_comments(sql, [(7, f"2024-01-0{d} 00:00+00") for d in range(1, 4)])
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    broken, commentator = engine.backfill(project.rules())
    assert (broken.status, broken.message) == (
        "failed",
        "broken: division by zero (SQLSTATE 22012)",
    )
    assert commentator.status == "ok" and commentator.granted == 1
    assert sql("SELECT badge, status, message FROM plaudit.run ORDER BY run_id") == [
        ("broken", "failed", broken.message),
        ("commentator", "ok", None),
    ]
    assert sql("SELECT slug, dirty FROM plaudit.badge ORDER BY 1") == [
        ("broken", True),
        ("commentator", False),
    ]


def test_a_rule_past_its_timeout_fails_alone(project, engine_for, sql):
    project.write("plaudit.yaml", "allow_functions: [pg_sleep]\n")  # a slow rule, on purpose
    project.write(
        "rules/slow.yaml",
        """
        slug: slow
        name: Slow
        kind: award
        timeout: 200ms
        query: |
          SELECT 1::bigint AS user_id, now() AS achieved_at FROM pg_sleep(5)
    """,
    )
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    [result] = engine.backfill(project.rules())
    assert (result.status, result.message) == (
        "failed",
        "slow: canceling statement due to statement timeout (SQLSTATE 57014)",
    )
    assert result.seconds < 3
    assert sql("SELECT status FROM plaudit.run") == [("failed",)]


def test_backfills_default_to_backfill_timeout_and_incremental_runs_to_statement_timeout(
        project, engine_for, sql):
    project.write(
        "plaudit.yaml",
        "statement_timeout: 200ms\nbackfill_timeout: 30s\nallow_functions: [pg_sleep]\n",
    )
    project.write(
        "rules/slowish.yaml",
        """
        slug: slowish
        name: Slowish
        kind: award
        triggers: [ping]
        query: |
          SELECT s.user_id, now() AS achieved_at
          FROM (SELECT 1::bigint AS user_id) AS s, pg_sleep(0.5)
          WHERE {{ affected('s.user_id') }}
    """,
    )
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    [rule] = project.rules()
    assert engine.run_rule(rule, "backfill").status == "ok"  # half a second: within 30s
    sql("SELECT plaudit.track('ping', 1)")
    [result] = run_batch(engine, 10).runs
    assert (result.status, result.message) == (
        "failed",
        "slowish: timed out after 200ms (cancelled by the watchdog)",
    )


def test_a_busy_rule_is_skipped_not_queued(count_project, dsn, sql):
    project, engine = count_project
    holder = psycopg.connect(dsn)
    holder.execute("SELECT pg_advisory_xact_lock(hashtext('plaudit'), hashtext('commentator'))")
    try:
        [result] = engine.backfill(project.rules())
    finally:
        holder.rollback()
        holder.close()
    assert (result.status, result.message) == (
        "skipped",
        "commentator: busy: another run holds its lock",
    )
    assert sql("SELECT status FROM plaudit.run") == [("skipped",)]


def test_concurrent_backfills_never_grant_twice(demo_project, dsn, sql):
    sql("SELECT * FROM demo_generate(300, 20000)")
    from plaudit.model.config import load_config

    config = load_config(demo_project.path)
    with Engine.connect(config, dsn) as engine:
        deploy_rules(engine, demo_project.rules())
    results = []

    def backfill():
        with Engine.connect(config, dsn) as engine:
            results.extend(engine.backfill(demo_project.rules()))

    threads = [threading.Thread(target=backfill) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sql("SELECT count(*) FROM plaudit.user_badge")[0][0]
    assert sum(r.granted for r in results) == total > 0
    assert {r.status for r in results} <= {"ok", "skipped"}


def test_a_rule_takes_any_number_of_params(project, engine_for, sql):
    """Params travel as one array: a rule with 20 params deploys and runs, and its last
    param binds like its first (there used to be a limit of 16)."""
    params = "\n".join(f"          p{n}: {{type: bigint}}" for n in range(1, 21))
    project.write("rules/many.yaml", f"""
        slug: many
        name: Many
        kind: award
        params:
{params}
        query: |
          SELECT {{{{ param('p20') }}}} AS user_id, now() AS achieved_at
          WHERE {{{{ param('p1') }}}} IS NULL
    """)
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    [result] = engine.backfill(project.rules(), {"p20": "7"})
    assert (result.status, result.granted) == ("ok", 1)
    assert sql("SELECT user_id, badge FROM plaudit.user_badge") == [(7, "many")]


def test_a_backfills_dependents_run_under_their_own_timeouts_not_its(project, engine_for, sql):
    """The rules reading a backfilled badge re-check its new grants in the backfill's
    transaction: each under its own deadline, not under the backfilled rule's timeout."""
    project.write("plaudit.yaml", "allow_functions: [pg_sleep]\n")
    project.write("rules/fast.yaml", """
        slug: fast
        name: Fast
        kind: award
        timeout: 300ms
        query: |
          SELECT 1::bigint AS user_id, timestamptz '2024-01-01' AS achieved_at
    """)
    project.write("rules/slow_reader.yaml", """
        slug: slow_reader
        name: Slow reader
        kind: award
        query: |
          SELECT b.user_id, b.achieved_at
          FROM {{ badge('fast') }} AS b, pg_sleep(0.6)
          WHERE {{ affected('b.user_id') }}
    """)
    engine = engine_for(project)
    deploy_rules(engine, project.rules())
    fast = [r for r in project.rules() if r.slug == "fast"]
    [result] = engine.backfill(fast)
    assert (result.status, result.granted) == ("ok", 1)
    assert sql("SELECT badge, mode, status FROM plaudit.run ORDER BY run_id") == [
        ("fast", "backfill", "ok"), ("slow_reader", "incremental", "ok")]
    assert sql("SELECT badge FROM plaudit.user_badge ORDER BY 1") == [("fast",), ("slow_reader",)]


def test_backfill_on_several_connections_equals_one_and_waits_for_what_a_rule_reads(
        demo_project, engine_for, sql):
    sql("SELECT * FROM demo_generate(200, 10000)")
    engine = engine_for(demo_project)
    deploy_rules(engine, demo_project.rules())
    parallel = engine.backfill(demo_project.rules(), jobs=4)
    assert all(r.status == "ok" for r in parallel)
    grants = sql("SELECT user_id, badge, level, scope, achieved_at FROM plaudit.user_badge "
                 "ORDER BY 1, 2, 3, 4")
    progress = sql("SELECT user_id, badge, scope, value, next_level FROM plaudit.user_progress "
                   "ORDER BY 1, 2, 3")
    runs = sql("SELECT badge, started_at, finished_at FROM plaudit.run ORDER BY run_id")
    # several rules really ran at once
    assert any(a[1] < b[2] and b[1] < a[2] for a in runs for b in runs if a[0] < b[0])
    # the composite started after the rules it reads had finished
    [reads] = sql("SELECT definition -> 'depends_on' FROM plaudit.badge "
                  "WHERE slug = 'all_rounder'")[0]
    start = {badge: started for badge, started, _ in runs}
    end = {badge: finished for badge, _, finished in runs}
    assert reads and all(end[slug] <= start["all_rounder"] for slug in reads)

    sql("TRUNCATE plaudit.user_badge, plaudit.user_progress")
    sequential = engine.backfill(demo_project.rules(), jobs=1)
    assert [r.slug for r in sequential] == [r.slug for r in parallel]
    assert [r.granted for r in sequential] == [r.granted for r in parallel]
    assert sql("SELECT user_id, badge, level, scope, achieved_at FROM plaudit.user_badge "
               "ORDER BY 1, 2, 3, 4") == grants
    assert sql("SELECT user_id, badge, scope, value, next_level FROM plaudit.user_progress "
               "ORDER BY 1, 2, 3") == progress
