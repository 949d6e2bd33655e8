"""Real PostgreSQL for every test that touches data.

One embedded cluster (plaudit's own cluster code) runs for the session; pytest-postgresql's
`postgresql_noproc` builds a template database once (demo app tables, plaudit schema) and
each test gets a fresh database cloned from it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from pytest_postgresql import factories

from plaudit.cli import cli
from plaudit.local.cluster import Cluster, has_pg_cron
from plaudit.model.config import load_config
from plaudit.model.rules import load_rules
from plaudit.runtime.db import Database, connect
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Engine
from plaudit.sqlfiles import sql_dir

REPO = Path(__file__).resolve().parents[1]
# Under the repository, not /tmp: pytest's tmp dirs are 0700 root, which the postgres OS user
# (the server runs as postgres when the tests run as root) cannot enter.
CLUSTER_DIR = REPO / ".plaudit-test"
_STARTED = pytest.StashKey[bool]()
# Every session holds this shared lock while it runs, so that one session can tell that it is
# alone (the exclusive lock is free) before restarting the cluster.
_SESSION_LOCK = pytest.StashKey[Any]()
# CI sets it: pg_cron tests must run there, so a missing pg_cron fails them instead of skipping.
REQUIRE_PG_CRON = "PLAUDIT_REQUIRE_PG_CRON"


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("postgresql_port") or os.environ.get("PLAUDIT_TEST_NO_CLUSTER"):
        return
    cluster = Cluster(CLUSTER_DIR, dbname="postgres")
    # another pytest session (or a developer) may be using the cluster: only the session that
    # started it stops it
    config.stash[_STARTED] = not cluster.is_running()
    url = cluster.start()
    config.stash[_SESSION_LOCK] = lock = open(CLUSTER_DIR / "sessions.lock", "a")  # noqa: SIM115
    # a cluster started before pg_cron was installed loads it at its next start (its settings
    # are rewritten at every start): restart it now if no other session is using it
    if has_pg_cron() and not _cron_loaded(url) and _alone(lock, url):
        url = cluster.restart()
        config.stash[_STARTED] = True
    fcntl.flock(lock, fcntl.LOCK_SH)
    config.option.postgresql_host = "127.0.0.1"
    config.option.postgresql_port = url.rsplit(":", 1)[1].split("/")[0]
    config.option.postgresql_user = "postgres"


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_STARTED, False) and not os.environ.get("PLAUDIT_TEST_KEEP_CLUSTER"):
        Cluster(CLUSTER_DIR, dbname="postgres").stop()


# The database pg_cron keeps its jobs in, when the server preloads pg_cron (a
# cron.database_name in the configuration alone is no sign that it does).
CRON_DATABASE = (
    "SELECT CASE WHEN current_setting('shared_preload_libraries') ~ '(^|[\\s,\"])pg_cron($|[\\s,\"])'"
    " THEN coalesce(current_setting('cron.database_name', true), 'postgres') END"
)


def _cron_loaded(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(CRON_DATABASE).fetchone()
    return row is not None and row[0] is not None


def _alone(lock: Any, url: str) -> bool:
    """No other session holds the lock, and no client is connected (sessions that predate the
    lock included)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    return row is not None and row[0] == 0


def _dsn(host: str, port: int | str, user: str, dbname: str, password: str | None = None) -> str:
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def load_template(host: str, port: int, user: str, dbname: str, **_: Any) -> None:
    """The template every test database is cloned from: demo app tables and plaudit schema."""
    with connect(_dsn(host, port, user, dbname)) as conn:
        db = Database(conn, "plaudit")
        for name in ("schema.sql", "generate.sql"):
            db.script((sql_dir() / "demo" / name).read_text(), name)
        Engine(db, load_config(REPO)).init()


postgresql_noproc = factories.postgresql_noproc(dbname="plaudit_tests", load=[load_template])
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture
def dsn(postgresql: psycopg.Connection[Any]) -> str:
    info = postgresql.info
    return _dsn(info.host, info.port, info.user, info.dbname)


@pytest.fixture
def sql(dsn: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """Run SQL on the test database (autocommit) and return its rows as tuples."""
    conn = psycopg.connect(dsn, autocommit=True)

    def run(query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    yield run
    conn.close()


@dataclass
class Project:
    """A plaudit project directory with its own rules, for one test."""

    path: Path

    def write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())
        return target

    def rules(self) -> list[Any]:
        return load_rules(self.path / "rules", root=self.path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty project (its own rules/ and plaudit.yaml)."""
    (tmp_path / "rules").mkdir()
    return Project(tmp_path)


@pytest.fixture
def demo_project(tmp_path: Path) -> Project:
    """A project holding a copy of the bundled rules/."""
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    return Project(tmp_path)


@pytest.fixture
def run_cli(dsn: str) -> Callable[..., Result]:
    """Invoke the CLI against the test database; stdout and stderr stay apart."""

    def invoke(project: Project, *args: str, dsn_: str | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            cli,
            ["--dsn", dsn_ or dsn, "--project", str(project.path), *args],
            catch_exceptions=False,
        )

    return invoke


@pytest.fixture
def engine_for(dsn: str) -> Iterator[Callable[[Project], Engine]]:
    engines: list[Engine] = []

    def make(project: Project) -> Engine:
        engine = Engine.connect(load_config(project.path), dsn)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def deployed(project: Project, engine_for: Callable[[Project], Engine]) -> Callable[..., Engine]:
    """deployed(rule, ...) -> engine: the project holding these rules, deployed."""

    def make(*rules: str) -> Engine:
        for text in rules:
            slug = text.split("slug: ", 1)[1].split()[0]
            project.write(f"rules/{slug}.yaml", text)
        engine = engine_for(project)
        deploy_rules(engine, project.rules())
        return engine

    return make


@dataclass
class CronServer:
    """pg_cron on the test server: its database, where jobs are kept (cron.database_name)."""

    dsn: str

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def _no_pg_cron(reason: str) -> None:
    if os.environ.get(REQUIRE_PG_CRON):
        pytest.fail(f"{REQUIRE_PG_CRON} is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cron_server(postgresql_noproc: Any) -> CronServer:
    """pg_cron, loaded and created in its database; skips (fails in CI) when it is absent.

    pg_cron keeps jobs in one database, not in each test's: tests schedule jobs there with
    cron.schedule_in_database (which `plaudit schedule` does by itself), to run in their own.
    """
    proc = postgresql_noproc
    maintenance = _dsn(proc.host, proc.port, proc.user, "postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        installed, database = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_cron'), "
            f"({CRON_DATABASE})"
        ).fetchone() or (False, None)
    if not installed:
        _no_pg_cron("pg_cron is not installed on the test server (apt-get install postgresql-15-cron)")
    if database is None:
        _no_pg_cron(
            "the test server does not load pg_cron: it was started before pg_cron was installed "
            "and another session is using it; it loads pg_cron at its next start"
        )
    server = CronServer(_dsn(proc.host, proc.port, proc.user, database))
    # concurrent sessions: CREATE EXTENSION IF NOT EXISTS is not safe against itself
    server.sql(
        "SELECT pg_advisory_lock(42, 7); CREATE EXTENSION IF NOT EXISTS pg_cron; "
        "SELECT pg_advisory_unlock(42, 7)"
    )
    return server


@pytest.fixture
def cron(cron_server: CronServer, dsn: str) -> Iterator[CronServer]:
    """pg_cron for one test; the test's jobs (those that run in its database, and plaudit's
    jobs for it) are removed afterwards."""
    yield cron_server
    dbname = dsn.rsplit("/", 1)[1]
    cron_server.sql(
        "SELECT cron.unschedule(jobid) FROM cron.job "
        "WHERE database = %s OR starts_with(jobname, %s)",
        [dbname, f"plaudit:{dbname}."],
    )


@pytest.fixture
def runner_role(dsn, sql):
    """A runner role name of this test's own (roles belong to the whole server)."""
    role = f"runner_{dsn.rsplit('/', 1)[1]}"
    yield role
    # The CLI's sessions granted the role read access to their temporary batch table; a
    # backend drops its temporary tables after its client has gone, so DROP OWNED could meet
    # a table half dropped ("cache lookup failed for relation"): wait for them (bounded).
    sql("DO $$ BEGIN FOR i IN 1..100 LOOP EXIT WHEN NOT EXISTS (SELECT FROM pg_class AS c "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.relname = 'plaudit_batch' "
        "AND n.nspname LIKE 'pg_temp_%' AND n.oid <> pg_my_temp_schema()); "
        "PERFORM pg_sleep(0.05); END LOOP; END $$")
    sql(f'DROP OWNED BY "{role}"')
    sql(f'DROP ROLE IF EXISTS "{role}"')
