"""Real PostgreSQL for every test that touches data.

One embedded cluster (plaudit's own cluster code) runs for the session; pytest-postgresql's
`postgresql_noproc` builds a template database once (demo app tables, plaudit schema) and
each test gets a fresh database cloned from it.
"""

from __future__ import annotations

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
from plaudit.cluster import Cluster
from plaudit.config import load_config
from plaudit.db import Database, connect
from plaudit.engine import Engine
from plaudit.rules import load_rules
from plaudit.sqlfiles import sql_dir

REPO = Path(__file__).resolve().parents[1]
# Under the repository, not /tmp: pytest's tmp dirs are 0700 root, which the postgres OS user
# (the server runs as postgres when the tests run as root) cannot enter.
CLUSTER_DIR = REPO / ".plaudit-test"
_STARTED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("postgresql_port") or os.environ.get("PLAUDIT_TEST_NO_CLUSTER"):
        return
    cluster = Cluster(CLUSTER_DIR, dbname="postgres")
    # another pytest session (or a developer) may be using the cluster: only the session that
    # started it stops it
    config.stash[_STARTED] = not cluster.is_running()
    url = cluster.start()
    config.option.postgresql_host = "127.0.0.1"
    config.option.postgresql_port = url.rsplit(":", 1)[1].split("/")[0]
    config.option.postgresql_user = "postgres"


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_STARTED, False) and not os.environ.get("PLAUDIT_TEST_KEEP_CLUSTER"):
        Cluster(CLUSTER_DIR, dbname="postgres").stop()


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
