"""The embedded cluster against a real PostgreSQL server (no mocks).

Cluster directories live under the repo, not pytest's tmp_path: when the tests run as root the
server runs as the postgres user, which cannot enter root's 0700 temp directories.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from plaudit.errors import ClusterError
from plaudit.local.cluster import Cluster, find_pg_bin, has_pg_cron

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def _fresh_cluster(name: str) -> Iterator[Cluster]:
    directory = REPO / f".plaudit-test-cluster-{name}-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    cluster = Cluster(directory)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from _fresh_cluster("main")


@pytest.fixture
def other_cluster() -> Iterator[Cluster]:
    yield from _fresh_cluster("other")


def _select_one(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def test_start_from_scratch_gives_a_working_url(cluster: Cluster) -> None:
    assert not cluster.is_initialized()
    url = cluster.start()
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert url.endswith("/plaudit")
    assert url == cluster.url()
    assert cluster.is_initialized() and cluster.is_running()
    assert _select_one(url) == 1


def test_start_twice_returns_the_same_url(cluster: Cluster) -> None:
    first = cluster.start()
    assert cluster.start() == first
    assert Cluster(cluster.directory).start() == first


def test_restart_keeps_data(cluster: Cluster) -> None:
    url = cluster.start()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    cluster.stop()
    assert not cluster.is_running()
    assert cluster.start() == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id FROM kept").fetchall() == [(42,)]


def test_stop_twice_is_fine(cluster: Cluster) -> None:
    cluster.start()
    cluster.stop()
    cluster.stop()
    assert not cluster.is_running()
    assert cluster.is_initialized()


def test_concurrent_starts_initdb_once(other_cluster: Cluster) -> None:
    # flock locks belong to open file descriptions, so threads contend like processes do.
    urls: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            urls.append(Cluster(other_cluster.directory).start())
        except BaseException as e:  # surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(urls) == 2 and urls[0] == urls[1]
    assert _select_one(urls[0]) == 1


def test_settings_are_rewritten_at_every_start(cluster: Cluster) -> None:
    """An existing cluster takes plaudit's current settings at its next start (pg_cron
    installed after initdb, say): they live in data/plaudit.conf, rewritten at every start and
    included at the end of postgresql.conf."""
    url = cluster.start()
    cluster.stop()
    (cluster.data / "plaudit.conf").write_text("fsync = on\n")
    main = cluster.data / "postgresql.conf"
    main.write_text(main.read_text().replace("include_if_exists = 'plaudit.conf'", ""))
    assert cluster.start() == url
    assert main.read_text().count("include_if_exists = 'plaudit.conf'") == 1
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    assert preload == (("pg_cron",) if has_pg_cron() else ("",))


def test_find_pg_bin_with_bad_override_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAUDIT_PG_BIN", str(tmp_path))
    with pytest.raises(ClusterError) as exc:
        find_pg_bin()
    assert str(exc.value) == (
        f"PLAUDIT_PG_BIN={tmp_path} does not contain initdb and pg_ctl; set it to the "
        "directory holding them (e.g. /usr/lib/postgresql/15/bin) or unset it"
    )


def test_find_pg_bin_finds_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAUDIT_PG_BIN", raising=False)
    bindir = find_pg_bin()
    assert (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()


def test_url_of_uninitialized_cluster_raises(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "nothing-here")
    assert not cluster.is_initialized() and not cluster.is_running()
    with pytest.raises(ClusterError, match="no local cluster in"):
        cluster.url()
    cluster.stop()  # stopping a cluster that never existed is a no-op


@pytest.mark.skipif(os.geteuid() != 0, reason="only root must hand the server to postgres")
def test_a_project_the_postgres_user_cannot_reach_still_gets_a_cluster(tmp_path: Path) -> None:
    # pytest's tmp_path is 0700 root: exactly a project cloned under /root
    cluster = Cluster(tmp_path / ".plaudit")
    try:
        assert cluster.server_dir.parent == Path("/var/tmp/plaudit-clusters")
        assert _select_one(cluster.start()) == 1
        assert (tmp_path / ".plaudit" / "port").is_file()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.server_dir, ignore_errors=True)
