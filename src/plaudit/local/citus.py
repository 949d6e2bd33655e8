"""A local Citus cluster: a coordinator and N workers, each an embedded cluster (cluster.py)
on its own port of 127.0.0.1, preloading citus (`plaudit db start --citus N`, the Citus
tests, `bench --citus`).

The coordinator is the project's embedded cluster itself (.plaudit/), so every command that
connects to the embedded cluster connects to the coordinator; the workers live in
.plaudit/worker1, .plaudit/worker2, ... Each node holds a marker file (CITUS_MARKER) that
makes it preload citus at every start. Citus needs the same database on every node: the
extension is created in it on each, then the coordinator registers itself and the workers.

Citus is not packaged for Debian: when citus.so is missing, `build()` runs the vendored
source's build script (../shared/vendor/citus/build.sh, as root, 2-4 minutes, idempotent).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg

from plaudit.errors import ClusterError
from plaudit.local.cluster import CITUS_MARKER, Cluster, find_pg_bin

# how many workers the coordinator in this directory was started with (a file of one number)
WORKERS_FILE = "citus-workers"
# where the Citus source release and its build script are vendored, relative to a checkout
BUILD_SCRIPT = Path(__file__).resolve().parents[4] / "shared" / "vendor" / "citus" / "build.sh"


def has_citus(bindir: Path | None = None) -> bool:
    """Whether the server binaries can load citus (citus.so in their pkglibdir)."""
    return (Cluster._pkglibdir(bindir or find_pg_bin()) / "citus.so").is_file()


def build() -> None:
    """Build and install Citus from the vendored source when citus.so is missing."""
    if has_citus():
        return
    script = Path(os.environ.get("PLAUDIT_CITUS_BUILD", BUILD_SCRIPT))
    if not script.is_file():
        raise ClusterError(
            f"citus is not installed for {find_pg_bin()} and its build script {script} is "
            "missing: install Citus 13 for this PostgreSQL, or set PLAUDIT_CITUS_BUILD to a "
            "script that does"
        )
    if os.geteuid() != 0:
        raise ClusterError(f"citus is not installed; building it needs root: sudo bash {script}")
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if res.returncode != 0 or not has_citus():
        raise ClusterError(f"building citus with {script} failed:\n{res.stderr.strip()[-2000:]}")


def citus_workers(directory: Path) -> int:
    """The number of workers of the local Citus cluster in `directory`; 0: not one."""
    try:
        return int((Path(directory) / WORKERS_FILE).read_text().strip())
    except (OSError, ValueError):
        return 0


class CitusCluster:
    """A coordinator in `directory` and `workers` worker nodes in its subdirectories."""

    def __init__(self, directory: Path, workers: int, *, dbname: str = "plaudit"):
        if workers < 1:
            raise ClusterError(f"a Citus cluster needs at least one worker, not {workers}")
        self.directory = Path(directory).absolute()
        self.dbname = dbname
        self.coordinator = Cluster(self.directory, dbname=dbname)
        self.workers = [Cluster(self.directory / f"worker{i}", dbname=dbname)
                        for i in range(1, workers + 1)]

    def start(self) -> str:
        """Start every node (creating them the first time), create the extension in each and
        register the nodes; returns the coordinator's URL. Safe to call again."""
        existing = citus_workers(self.directory)
        if self.coordinator.is_initialized() and existing != len(self.workers):
            raise ClusterError(
                f"{self.directory} holds "
                + (f"a Citus cluster of {existing} workers" if existing else
                   "a plain PostgreSQL cluster")
                + f", not one of {len(self.workers)}: delete it to recreate it, or start it as "
                "it was created")
        build()
        for node in [self.coordinator, *self.workers]:
            node.directory.mkdir(parents=True, exist_ok=True)
            (node.directory / CITUS_MARKER).touch()
        (self.directory / WORKERS_FILE).write_text(f"{len(self.workers)}\n")
        for node in self.workers:
            _create_extension(node.start())
        url = self.coordinator.start()
        _create_extension(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)",
                         [self.coordinator._stored_port()])
            for node in self.workers:
                conn.execute(
                    "SELECT citus_add_node('127.0.0.1', %(port)s) WHERE NOT EXISTS ("
                    "SELECT FROM pg_dist_node WHERE nodename = '127.0.0.1' "
                    "AND nodeport = %(port)s)", {"port": node._stored_port()})
        return url

    def stop(self) -> None:
        """Stop the coordinator, then the workers."""
        for node in [self.coordinator, *self.workers]:
            node.stop()

    def urls(self) -> list[str]:
        """The coordinator's URL, then each worker's."""
        return [node.url() for node in [self.coordinator, *self.workers]]


def _create_extension(url: str) -> None:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
    except psycopg.Error as exc:
        raise ClusterError(f"CREATE EXTENSION citus failed at {url}: {exc}") from exc
