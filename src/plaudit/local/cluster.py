"""An embedded PostgreSQL cluster living in a project directory (usually ``.plaudit/``).

It lets ``plaudit`` work out of the box without a DSN: the first ``start()`` runs initdb,
later ones reuse the same data and port. It is a throwaway dev/test cluster, so durability
is traded for speed (fsync off and friends).
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from plaudit.errors import ClusterError, NoProject

SERVER_ROOT = Path("/var/tmp/plaudit-clusters")
PG_USER = "postgres"  # OS user when we are root, and the database superuser in every case
# The settings of a local Citus node: 8 shards per table (Citus's default, 32, is meant for
# many cores; 4 per worker keep both cores of a 2-worker cluster busy).
CITUS_SETTINGS = {"citus.shard_count": "8"}
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the trailing NUL
SETTINGS_FILE = "plaudit.conf"
# A node of a local Citus cluster (local/citus.py) holds this file: it preloads citus.
CITUS_MARKER = "citus-node"
INCLUDE_LINE = f"include_if_exists = '{SETTINGS_FILE}'"


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()


def find_pg_bin() -> Path:
    """Locate initdb/pg_ctl; the env override wins so users can pin a version explicitly."""
    override = os.environ.get("PLAUDIT_PG_BIN")
    if override:
        if _has_server(Path(override)):
            return Path(override)
        raise ClusterError(
            f"PLAUDIT_PG_BIN={override} does not contain initdb and pg_ctl; "
            "set it to the directory holding them (e.g. /usr/lib/postgresql/15/bin) or unset it"
        )
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if _has_server(bindir):
            return bindir
    raise ClusterError(
        "no PostgreSQL server binaries found (looked for initdb in PATH, pg_config --bindir and "
        "/usr/lib/postgresql/*/bin); install them, e.g. `apt-get install postgresql`, or set "
        "PLAUDIT_PG_BIN to the directory holding initdb and pg_ctl, or pass --dsn to use an "
        "existing server"
    )


def _reachable_by(user: str, directory: Path) -> bool:
    """Whether `user` may search every existing ancestor of `directory` (mode bits only)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return False
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for path in [directory, *directory.parents]:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == account.pw_uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def _free_port() -> int:
    """Ask the kernel for an unused port; racy in theory, fine for a local dev cluster."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def has_pg_cron(bindir: Path | None = None) -> bool:
    """Whether the server binaries come with pg_cron (e.g. apt-get install postgresql-15-cron)."""
    return (Cluster._pkglibdir(bindir or find_pg_bin()) / "pg_cron.so").is_file()


class Cluster:
    """A local cluster in ``directory``: data/, postgres.log, run/ (sockets), port, .lock."""

    def __init__(self, directory: Path, *, port: int | None = None, dbname: str = "plaudit"):
        self.directory = Path(directory).absolute()
        self.port = port
        self.dbname = dbname
        self._as_root = os.geteuid() == 0
        self.server_dir = self._server_dir()
        self.data = self.server_dir / "data"
        self.log = self.server_dir / "postgres.log"
        self.run_dir = self.server_dir / "run"
        self.port_file = self.directory / "port"

    def _server_dir(self) -> Path:
        """Where the server's own files go: the cluster directory itself, unless we are root
        and the postgres user cannot reach it (a project under /root or a 0700 temp dir).
        Then they live in a directory of their own under /var/tmp, named after the project
        directory, while the port and the lock stay in the project."""
        if not self._as_root or _reachable_by(PG_USER, self.directory):
            return self.directory
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:16]
        return SERVER_ROOT / digest

    # -- state -------------------------------------------------------------------------
    def is_initialized(self) -> bool:
        return (self.data / "PG_VERSION").is_file() and self.port_file.is_file()

    def is_running(self) -> bool:
        """Same liveness test pg_ctl status uses, without spawning a process (or runuser)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError) as e:
            return isinstance(e, PermissionError)  # exists but belongs to someone else
        return True

    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self._stored_port()}/{self.dbname}"

    def _stored_port(self) -> int:
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            raise ClusterError(
                f"no local cluster in {self.directory} yet; start it first (Cluster.start()), "
                "or pass --dsn to use an existing server"
            ) from None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> str:
        """Bring the cluster up, creating it on first use; safe to call repeatedly/concurrently."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.server_dir != self.directory:
            SERVER_ROOT.mkdir(mode=0o755, exist_ok=True)
            self.server_dir.mkdir(mode=0o755, exist_ok=True)
        with self._locked():
            bindir = find_pg_bin()
            if not self.is_initialized():
                self._initdb(bindir)
            elif self.port is not None and self.port != self._stored_port():
                raise ClusterError(
                    f"the cluster in {self.directory} was created with port "
                    f"{self._stored_port()}, not {self.port}; drop the port option or delete "
                    f"{self.directory} to recreate it"
                )
            if not self.is_running():
                self._pg_start(bindir)
            self._ensure_database()
            return self.url()

    def restart(self) -> str:
        """Stop and start again, e.g. to load a library newly in shared_preload_libraries."""
        self.stop()
        return self.start()

    def stop(self) -> None:
        """Fast shutdown: we never need to wait for clients of a local dev cluster."""
        if not self.directory.is_dir():
            return
        with self._locked():
            if not self.is_initialized() or not self.is_running():
                return
            cmd = [str(find_pg_bin() / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"]
            res = self._run(cmd)
            if res.returncode != 0 and self.is_running():
                raise ClusterError(f"pg_ctl stop failed for {self.data}: {res.stderr.strip()}")

    # -- internals ---------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize start/stop across processes so two of them never initdb the same dir."""
        with open(self.directory / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        """Server commands refuse to run as root, so drop to the postgres user when needed."""
        if self._as_root:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        return subprocess.run(
            cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=self.server_dir
        )

    def _owned_dir(self, path: Path) -> None:
        """Create a directory the server user may write to (it never runs as us when root)."""
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
        if self._as_root:
            shutil.chown(path, PG_USER, PG_USER)

    def _check_access(self) -> None:
        if not self._as_root:
            return
        if shutil.which("runuser") is None:
            raise ClusterError("running as root needs `runuser` (util-linux) to drop to postgres")
        if self._run(["test", "-x", str(self.server_dir)]).returncode != 0:
            raise ClusterError(
                f"the {PG_USER} OS user cannot enter {self.server_dir}; PostgreSQL refuses to run "
                f"as root, so every parent directory must be searchable by {PG_USER} (e.g. "
                f"`chmod o+x` on them), or put the project elsewhere, or pass --dsn"
            )

    def _initdb(self, bindir: Path) -> None:
        """initdb into a scratch dir and rename it, so a crash never leaves a half-made cluster."""
        self._check_access()
        scratch = self.server_dir / "data.init"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(self.data, ignore_errors=True)
        self._owned_dir(scratch)
        initdb = [str(bindir / "initdb"), "-D", str(scratch), "-U", PG_USER, "--auth=trust"]
        res = self._run([*initdb, "--encoding=UTF8", "--locale=C", "--no-sync"])
        if res.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise ClusterError(f"initdb failed in {scratch}:\n{(res.stderr or res.stdout).strip()}")
        port = self.port or _free_port()
        scratch.rename(self.data)
        self.port_file.write_text(f"{port}\n")

    def _write_settings(self, bindir: Path) -> None:
        """plaudit's settings go to data/plaudit.conf, rewritten before every start and
        included at the end of postgresql.conf, so they win over earlier lines and an existing
        cluster picks up a change on its next start (pg_cron installed after initdb, say)."""
        settings = self._settings(bindir, self._stored_port())
        lines = ["# written by plaudit before every start (speed over durability)\n"]
        lines += [f"{k} = {v}\n" for k, v in settings.items()]
        target = self.data / SETTINGS_FILE
        target.write_text("".join(lines))
        main = self.data / "postgresql.conf"
        if INCLUDE_LINE not in main.read_text():
            with open(main, "a") as conf:
                conf.write(f"\n{INCLUDE_LINE}\n")
        if self._as_root:
            shutil.chown(target, PG_USER, PG_USER)

    def _settings(self, bindir: Path, port: int) -> dict[str, str]:
        socket_dir = str(self.run_dir)
        if len(f"{socket_dir}/.s.PGSQL.{port}.lock") > SOCKET_PATH_MAX:
            socket_dir = "/tmp"  # too long for a unix socket path; TCP is what url() uses
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "256MB",
            "max_connections": "200",
        }
        preload = []
        if (self.directory / CITUS_MARKER).is_file():
            preload.append("citus")  # citus must come first (it says so when it is not)
            settings.update(CITUS_SETTINGS)
        if has_pg_cron(bindir):
            preload.append("pg_cron")
            settings["cron.database_name"] = f"'{self.dbname}'"
            # job sessions connect like clients: over TCP, to the address the server listens on
            settings["cron.host"] = "'127.0.0.1'"
        if preload:
            settings["shared_preload_libraries"] = f"'{','.join(preload)}'"
        return settings

    @staticmethod
    def _pkglibdir(bindir: Path) -> Path:
        """pg_cron.so lives in the server's pkglibdir, which only its own pg_config knows."""
        pg_config = bindir / "pg_config"
        if pg_config.is_file():
            res = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True)
            if res.returncode == 0 and res.stdout.strip():
                return Path(res.stdout.strip())
        return bindir.parent / "lib"

    def _pg_start(self, bindir: Path) -> None:
        self._check_access()
        self._owned_dir(self.run_dir)
        self._write_settings(bindir)
        self.log.touch()
        seen = self.log.stat().st_size  # show only this attempt's lines on failure
        if self._as_root:
            shutil.chown(self.log, PG_USER, PG_USER)
        pg_ctl = [str(bindir / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log)]
        res = self._run([*pg_ctl, "-w", "-t", "60"])
        if res.returncode != 0:
            with open(self.log, "rb") as fh:
                fh.seek(seen)
                tail = "\n".join(fh.read().decode(errors="replace").splitlines()[-20:])
            raise ClusterError(
                f"PostgreSQL failed to start from {self.data} on port {self._stored_port()} "
                f"({res.stderr.strip() or res.stdout.strip()}); last lines of {self.log}:\n{tail}\n"
                f"If the port is taken, stop whatever uses it or delete {self.directory} to "
                "recreate the cluster; or pass --dsn to use an existing server"
            )

    def _ensure_database(self) -> None:
        admin = f"postgresql://{PG_USER}@127.0.0.1:{self._stored_port()}/postgres"
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
                found = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
                ).fetchone()
                if found is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        except psycopg.Error as e:
            raise ClusterError(
                f"cannot create database {self.dbname!r} in the local cluster at {admin}: {e}; "
                f"see {self.log}"
            ) from e


# libpq reads these itself: when one is set, an empty DSN means "use the environment".
LIBPQ_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")
EMBEDDED_DIR = ".plaudit"


def embedded_cluster(project_dir: Path) -> Cluster:
    return Cluster(project_dir / EMBEDDED_DIR)


def not_a_project(project_dir: Path) -> NoProject:
    return NoProject(
        f"{project_dir} is not a plaudit project (no plaudit.yaml), and no database was "
        "named: run plaudit in your project's folder, or pass --project DIR or --dsn"
    )


def resolve_dsn(
    dsn: str | None, project_dir: Path, *, project: bool = True, creates: bool = True
) -> str:
    """--dsn, then PLAUDIT_DSN, then the libpq variables, then the embedded local cluster:
    started if it exists, created only by a command that `creates` one, in a folder that is a
    `project` (plaudit.yaml, or named by --project): never by accident, in the wrong folder."""
    if dsn:
        return dsn
    if os.environ.get("PLAUDIT_DSN"):
        return os.environ["PLAUDIT_DSN"]
    if any(os.environ.get(name) for name in LIBPQ_VARIABLES):
        return ""
    cluster = embedded_cluster(project_dir)
    if not cluster.is_initialized():
        if not project:
            raise not_a_project(project_dir)
        if not creates:
            raise NoProject(
                f"no embedded cluster in {project_dir / EMBEDDED_DIR} yet: `plaudit init` "
                "creates it (or name a database with --dsn)"
            )
    from plaudit.local.citus import CitusCluster, citus_workers  # it builds on this module

    workers = citus_workers(cluster.directory)
    return CitusCluster(cluster.directory, workers).start() if workers else cluster.start()
