"""`python -m bench.run --citus N`: the demo rules' backfill on one PostgreSQL server vs a
Citus cluster (a coordinator and N workers, local/citus.py) on this machine, from the same
generated data (docs/citus.md, BENCHMARKS.md "Scaling out: Citus").

Both sides get the demo data from public.demo_generate (deterministic), vacuumed and
analyzed; the Citus side then distributes the demo tables by user (sql/demo/citus.sql) and
plaudit's (init --citus). Both run plaudit.yaml without `events:` (no capture triggers on
distributed tables) and every enabled bundled rule, timed per rule, in run order, once
(each rule's backfill is minutes at 1M users). For Citus, also the way each rule runs
(citus_route: on the workers or through the coordinator).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from plaudit.local.citus import CitusCluster
from plaudit.local.cluster import Cluster
from plaudit.model.config import load_config
from plaudit.model.rules import load_rules
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Engine
from plaudit.sqlfiles import sql_dir

from .dataset import Size

DEMO_TABLES = "challenge_entries, challenges, article_reads, comments, posts, users"
CONFIG = ("rules: rules\nschema: plaudit\nuser_id_type: bigint\ntimezone: UTC\n"
          "backfill_timeout: {timeout}\n")


@dataclass
class Side:
    """One setup's figures: seconds to load, and per rule seconds and grants."""

    name: str
    load_s: float = 0.0
    rules: dict[str, tuple[float, int]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(s for s, _ in self.rules.values())


def project_for(project: Path, timeout: str, workdir: Path) -> Path:
    """The project's rules with a plaudit.yaml of no `events:` and the bench's timeout."""
    target = workdir / "citus-project"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(project / "rules", target / "rules")
    (target / "plaudit.yaml").write_text(CONFIG.format(timeout=timeout))
    return target


def load(url: str, size: Size, citus: bool) -> float:
    """The demo data, generated, vacuumed (and distributed on Citus); no plaudit schema."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        conn.execute("DROP SCHEMA IF EXISTS plaudit CASCADE")
        conn.execute(f"DROP TABLE IF EXISTS {DEMO_TABLES} CASCADE")
        for name in ("schema.sql", "generate.sql"):
            conn.execute((sql_dir() / "demo" / name).read_text())
        conn.execute("SELECT * FROM demo_generate(%s, %s)", [size.users, size.activities])
        if citus:
            conn.execute((sql_dir() / "demo" / "citus.sql").read_text())
        conn.execute(f"VACUUM ANALYZE {DEMO_TABLES}")
    return time.perf_counter() - started


def backfill(url: str, project: Path, side: Side, citus: bool) -> None:
    config = load_config(project)
    rules = [r for r in load_rules(config.rules_dir, root=project) if r.enabled]
    with Engine.connect(config, url) as engine:
        engine.init(citus=citus)
        deploy_rules(engine, rules)
        if citus:
            side.routes = {r["slug"]: f"{r['route']}: {r['reason']}"
                           for r in engine.db.execute("citus_routes")}
        started: dict[str, float] = {}

        def start(rule: Any) -> None:
            started[rule.slug] = time.perf_counter()

        def done(rule: Any, result: Any) -> None:
            if result.status != "ok":
                raise RuntimeError(f"{rule.slug}: {result.message}")
            side.rules[rule.slug] = (time.perf_counter() - started[rule.slug], result.granted)

        engine.backfill(rules, on_start=start, on_done=done)


def compare(size: Size, workers: int, project: Path, timeout: str, workdir: Path,
            plain_dir: Path, citus_dir: Path, say: Callable[[str], None]) -> list[Side]:
    """One server vs the Citus cluster, at one size."""
    project = project_for(project, timeout, workdir)
    plain = Side("one server")
    url = Cluster(plain_dir, dbname="plaudit_bench").start()
    say(f"{size.label}: one server: generating {size.users:,} users")
    plain.load_s = load(url, size, citus=False)
    say(f"{size.label}: one server: backfill")
    backfill(url, project, plain, citus=False)
    cluster = CitusCluster(citus_dir, workers, dbname="plaudit_bench")
    url = cluster.start()
    distributed = Side(f"Citus, coordinator + {workers} workers")
    say(f"{size.label}: Citus: generating {size.users:,} users, distributing them")
    distributed.load_s = load(url, size, citus=True)
    say(f"{size.label}: Citus: backfill")
    backfill(url, project, distributed, citus=True)
    return [plain, distributed]


def table(sides: list[Side]) -> str:
    """Per rule: seconds on each side, the ratio, and where the Citus backfill ran."""
    plain, citus = sides
    lines = [
        "| rule | one server | Citus | Citus / one | grants | Citus runs it on |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for slug, (seconds, granted) in plain.rules.items():
        other, other_granted = citus.rules.get(slug, (float("nan"), -1))
        route = citus.routes.get(slug, "").split(":", 1)[0]
        same = "" if other_granted == granted else f" (Citus: {other_granted:,})"
        lines.append(f"| {slug} | {seconds:.2f} s | {other:.2f} s | {other / seconds:.2f}× "
                     f"| {granted:,}{same} | {route} |")
    lines.append(f"| **all** | **{plain.total:.1f} s** | **{citus.total:.1f} s** | "
                 f"**{citus.total / plain.total:.2f}×** | | |")
    lines.append(f"| data (generate, vacuum; Citus: + distribute) | {plain.load_s:.1f} s | "
                 f"{citus.load_s:.1f} s | | | |")
    return "\n".join(lines)
