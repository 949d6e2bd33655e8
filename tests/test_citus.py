"""plaudit on a real Citus cluster (docs/citus.md): a coordinator and two workers that this
suite starts itself (in .plaudit-test-citus/, on ports of its own), built from the vendored
Citus source when missing (local/citus.py).

- The same answers: the bundled rules' backfill on the demo data gives exactly the grants
  (user, badge, level, scope, achieved_at) and the progress it gives on plain PostgreSQL,
  from the same generated data.
- Incremental equals backfill on Citus (tests/test_equivalence.py's property, smaller): the
  demo history as events, run in batches, then the nightly job, equals a backfill on top and
  a backfill from scratch.
- Pushdown: Citus's own EXPLAIN of a co-located rule's statement is a pushed-down task per
  shard; a rule joining tables on other columns is not.

Without Citus on the machine the tests skip, unless PLAUDIT_REQUIRE_CITUS is set (CI sets
it once it has built Citus): then they fail.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from plaudit.cli import cli
from plaudit.errors import ClusterError, UnsupportedServer
from plaudit.local.citus import CitusCluster, has_citus
from plaudit.model.config import load_config
from plaudit.model.rules import load_rules
from plaudit.runtime.db import Database, connect
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Engine
from plaudit.runtime.runner import run_batch
from plaudit.sqlfiles import sql_dir

REPO = Path(__file__).resolve().parents[1]
CITUS_DIR = REPO / ".plaudit-test-citus"
REQUIRE_CITUS = "PLAUDIT_REQUIRE_CITUS"
USERS, ACTIVITIES = 400, 16_000  # the same-answers comparison (a few seconds a side)
SMALL_USERS, SMALL_ACTIVITIES = 60, 2_000  # the equivalence property
# The demo rules whose backfill Citus pushes down to the workers: their sources are activity
# tables distributed by their user column, co-located, grouped or windowed by user. The
# others join on another column (popular_author, influencer: comments to posts by post id),
# read plaudit's tables on the coordinator (all_rounder's badge()), rank across users
# (rising_star), use a simple CASE that Citus 13.2 cannot push into INSERT ... SELECT
# (podium), or a lateral lookup per user (streak, gauge): through the coordinator.
PUSHED_DOWN = {
    "active_reader", "activity_milestone", "commentator", "first_post", "meaning_builder",
    "points_milestone", "practice_builder", "sound_scholar", "top5_challenge", "word_collector",
}
# plaudit.yaml for Citus: no `events:` (capture triggers cannot go on distributed tables)
CONFIG = """
rules: rules
schema: plaudit
user_id_type: bigint
timezone: UTC
notify: {channel: plaudit_award, max_age: 2 days}
"""
# Incremental runs that Citus cannot plan: they join the batch's posts to comments or reads
# by post id (a repartitioned join inside a subquery). They fail, are marked dirty, and the
# nightly job's backfill repairs their grants (docs/citus.md).
COMPLEX_JOINS = ("complex joins are only supported when all distributed tables are co-located "
                 "and joined on their distribution columns (SQLSTATE 0A000)")
INCREMENTAL_FAILS = [(slug, f"{slug}: {COMPLEX_JOINS}") for slug in ("influencer", "popular_author")]
DEMO_TABLES = "challenge_entries, challenges, article_reads, comments, posts, users"


def _no_citus(reason: str) -> None:
    if os.environ.get(REQUIRE_CITUS):
        pytest.fail(f"{REQUIRE_CITUS} is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def citus_url() -> Iterator[str]:
    """The coordinator of a Citus cluster of two workers, for the whole session."""
    if not has_citus():
        _no_citus("Citus is not installed (bash ../shared/vendor/citus/build.sh builds it)")
    cluster = CitusCluster(CITUS_DIR, 2, dbname="plaudit_citus")
    started = not cluster.coordinator.is_running()
    url = cluster.start()
    yield url
    if started and not os.environ.get("PLAUDIT_TEST_KEEP_CLUSTER"):
        cluster.stop()


@pytest.fixture(scope="session")
def citus_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled rules, with a plaudit.yaml without `events:`."""
    path = tmp_path_factory.mktemp("citus-project")
    shutil.copytree(REPO / "rules", path / "rules")
    (path / "plaudit.yaml").write_text(textwrap.dedent(CONFIG).lstrip())
    return path


def load_demo(url: str, users: int, activities: int, *, citus: bool) -> None:
    """A fresh demo database: the app tables with generated data (distributed by user on
    Citus, sql/demo/citus.sql), and no plaudit schema."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        conn.execute("DROP SCHEMA IF EXISTS plaudit CASCADE")
        conn.execute(f"DROP TABLE IF EXISTS {DEMO_TABLES} CASCADE")
        for name in ("schema.sql", "generate.sql"):
            conn.execute((sql_dir() / "demo" / name).read_text())
        conn.execute("SELECT * FROM demo_generate(%s, %s)", [users, activities])
        if citus:
            conn.execute((sql_dir() / "demo" / "citus.sql").read_text())


def deployed_engine(url: str, project: Path, *, citus: bool) -> Engine:
    engine = Engine.connect(load_config(project), url)
    engine.init(citus=citus)
    deploy_rules(engine, load_rules(project / "rules", root=project))
    return engine


def state(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every grant with its date, and every progress value."""
    with psycopg.connect(url, autocommit=True) as conn:
        grants = conn.execute(
            "SELECT user_id, badge, level, scope, achieved_at FROM plaudit.user_badge "
            "ORDER BY 1, 2, 3, 4").fetchall()
        progress = conn.execute(
            "SELECT user_id, badge, scope, value, next_level, expires_at "
            "FROM plaudit.user_progress ORDER BY 1, 2, 3").fetchall()
    return grants, progress


def backfill(engine: Engine, project: Path) -> None:
    results = engine.backfill(load_rules(project / "rules", root=project))
    assert [(r.slug, r.message) for r in results if r.status != "ok"] == []


@pytest.fixture
def citus_sql(citus_url: str) -> Callable[..., list[tuple[Any, ...]]]:
    def run(query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(citus_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    return run


def test_init_places_the_tables_and_says_what_is_not_supported(citus_url, citus_project):
    load_demo(citus_url, 20, 200, citus=True)
    with deployed_engine(citus_url, citus_project, citus=True) as engine:
        assert engine.config.citus
        placed = {r["table_name"]: r["placement"]
                  for r in engine.db.execute("citus_placement")}
    assert placed["user_badge"] == placed["user_progress"] == "distributed by user_id"
    assert placed["suppressed_grant"] == "distributed by user_id"
    assert placed["badge"] == placed["run"] == placed["event"] == "coordinator"
    # co-located with each other and with the demo's activity tables
    with psycopg.connect(citus_url) as conn:
        groups = conn.execute(
            "SELECT count(DISTINCT colocationid) FROM pg_dist_partition "
            "WHERE logicalrelid = ANY ('{plaudit.user_badge, plaudit.user_progress, "
            "plaudit.suppressed_grant, public.comments, public.posts}'::regclass[])"
        ).fetchone()
    assert groups == (1,)


def test_the_demo_rules_give_the_same_answers_on_citus_as_on_postgresql(
        citus_url, citus_project, dsn):
    load_demo(citus_url, USERS, ACTIVITIES, citus=True)
    load_demo(dsn, USERS, ACTIVITIES, citus=False)
    with deployed_engine(citus_url, citus_project, citus=True) as engine:
        backfill(engine, citus_project)
    with deployed_engine(dsn, citus_project, citus=False) as engine:
        backfill(engine, citus_project)
    on_citus, on_postgresql = state(citus_url), state(dsn)
    assert len(on_postgresql[0]) > 1000 and len(on_postgresql[1]) > 1000  # not vacuous
    assert on_citus[0] == on_postgresql[0]
    assert on_citus[1] == on_postgresql[1]


def test_co_located_rules_are_pushed_down_and_the_others_say_why_not(
        citus_url, citus_project, citus_sql):
    load_demo(citus_url, 20, 200, citus=True)
    with deployed_engine(citus_url, citus_project, citus=True) as engine:
        routes = {r["slug"]: (r["route"], r["reason"])
                  for r in engine.db.execute("citus_routes")}
    assert {slug for slug, (route, _) in routes.items() if route == "workers"} == PUSHED_DOWN
    assert routes["commentator"] == ("workers", "pushed down: one task per shard (8 tasks)")
    assert routes["popular_author"][0] == "coordinator"
    assert "repartitions the join" in routes["popular_author"][1]
    assert "simple CASE" in routes["podium"][1]
    # Citus's own plan: a task per shard, no INSERT ... SELECT through the coordinator
    plan = "\n".join(row[0] for row in citus_sql(
        "SELECT plaudit.citus_explain(sql) FROM plaudit.compiled_rule "
        "WHERE badge = 'commentator' AND mode = 'backfill'"))
    assert "Custom Scan (Citus Adaptive)" in plan and "Task Count: 8" in plan
    assert "INSERT/SELECT method" not in plan


def test_incremental_runs_equal_a_backfill_on_citus(citus_url, citus_project, citus_sql):
    load_demo(citus_url, SMALL_USERS, SMALL_ACTIVITIES, citus=True)
    with deployed_engine(citus_url, citus_project, citus=True) as engine:
        citus_sql("UPDATE plaudit.badge SET dirty = false, due = NULL")
        # the history as the app's events (what capture triggers would enqueue), in the
        # order the rows were written, interleaved across tables by time
        citus_sql(
            "INSERT INTO plaudit.event (type, user_id, occurred_at, payload) "
            "SELECT type, user_id, at, payload FROM ("
            " SELECT 'comment_created' AS type, author_id AS user_id, created_at AS at, "
            "        to_jsonb(c) AS payload FROM comments AS c"
            " UNION ALL SELECT 'post_created', author_id, created_at, to_jsonb(p) FROM posts AS p"
            " UNION ALL SELECT 'article_read', reader_id, read_at, to_jsonb(r) "
            "           FROM article_reads AS r"
            " UNION ALL SELECT 'challenge_entered', user_id, submitted_at, to_jsonb(e) "
            "           FROM challenge_entries AS e) AS h ORDER BY at, type, user_id")
        sizes = iter([7, 300, 41, 1000])
        while run_batch(engine, next(sizes, 500)).events:
            pass
        assert citus_sql("SELECT DISTINCT badge, message FROM plaudit.run "
                         "WHERE status <> 'ok' ORDER BY 1") == INCREMENTAL_FAILS
        citus_sql("CALL plaudit.job_nightly()")
        incremental = state(citus_url)
        assert len(incremental[0]) > 100
        # a complete backfill on top finds nothing to add, move or correct
        results = engine.backfill(load_rules(citus_project / "rules", root=citus_project))
        assert [(r.slug, r.status, r.granted, r.moved) for r in results
                if r.status != "ok" or r.granted or r.moved] == []
        assert state(citus_url) == incremental
        # and from scratch
        citus_sql("TRUNCATE plaudit.user_badge, plaudit.user_progress")
        backfill(engine, citus_project)
    assert state(citus_url) == incremental


def test_check_answers_on_citus(citus_url, citus_project, citus_sql):
    load_demo(citus_url, 20, 200, citus=True)
    with deployed_engine(citus_url, citus_project, citus=True):
        citus_sql("UPDATE plaudit.badge SET dirty = false, due = NULL")
        citus_sql("INSERT INTO posts (author_id, kind, title, created_at) "
                  "VALUES (7, 'article', 't', now())")
        citus_sql("DELETE FROM plaudit.user_badge WHERE user_id = 7")
        rows = citus_sql("SELECT badge, level FROM plaudit.check('post_created', 7)")
        assert ("first_post", "first") in rows
        assert ("first_post", "first") in citus_sql(
            "SELECT badge, level FROM plaudit.unseen(7)")


def test_a_database_without_citus_refuses_init_citus(dsn, citus_project):
    with Engine(Database(connect(dsn), "plaudit"), load_config(citus_project)) as engine, \
            pytest.raises(UnsupportedServer, match="no citus extension"):
        engine.init(citus=True)


def test_preview_says_which_way_a_rule_runs_on_citus(citus_url, citus_project):
    load_demo(citus_url, SMALL_USERS, SMALL_ACTIVITIES, citus=True)
    with deployed_engine(citus_url, citus_project, citus=True):
        pass
    runner = CliRunner()
    args = ["--dsn", citus_url, "--project", str(citus_project), "preview"]
    pushed = runner.invoke(cli, [*args, "commentator"], catch_exceptions=False)
    assert pushed.exit_code == 0, pushed.output
    assert ("On Citus, a backfill runs on the workers: pushed down: one task per shard "
            "(8 tasks)") in pushed.stdout
    pulled = runner.invoke(cli, [*args, "popular_author"], catch_exceptions=False)
    assert pulled.exit_code == 0, pulled.output
    assert ("On Citus, a backfill runs on the coordinator: Citus pulls the rows to the "
            "coordinator: the rule joins tables on other columns than their user columns "
            "(Citus repartitions the join)") in pulled.stdout
    assert "On Citus, incremental runs fail (complex joins" in pulled.stdout


def test_a_cluster_started_with_other_workers_is_refused_with_what_it_is(citus_url):
    with pytest.raises(ClusterError, match="holds a Citus cluster of 2 workers, not one of 3"):
        CitusCluster(CITUS_DIR, 3, dbname="plaudit_citus").start()
