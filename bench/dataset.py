"""Sizes, the benchmark database, and loading the demo data into it.

The data is the demo community app's (sql/demo/): public.demo_generate fills it inside the
database, set-based, deterministic for a seed. The benchmark then vacuums it, as autovacuum
would after a bulk load, and installs plaudit (init, deploy: which also installs the
plaudit.yaml `events:` capture triggers on the demo tables).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from plaudit.local.cluster import Cluster
from plaudit.local.demo import load_demo_data
from plaudit.model.config import (
    CONFIG_FILE,
    DURATION_REQUIREMENT,
    Config,
    is_duration,
    load_config,
    milliseconds,
)
from plaudit.model.rules import Rule
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Engine

from .db import BenchDB
from .report import Figure, seconds

# Activities per user when a size names users only: 1M users come with 10M activities.
ACTIVITIES_PER_USER = 10
GENERATE_TARGET_S = 180.0  # 1M users / 10M activities in under 3 minutes
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([km]?)(?::(\d+(?:\.\d+)?)([km]?))?")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}
_REPLACED = re.compile(r"(statement_timeout|backfill_timeout|rules)\s*:")


@dataclass(frozen=True)
class Size:
    label: str
    users: int
    activities: int


def parse_size(text: str) -> Size:
    """`10k` (10,000 users, 100,000 activities), `1m`, or `USERS:ACTIVITIES` (`2k:30k`)."""
    match = _SIZE.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a size like 10k, 1m or 2k:30k")
    users = int(float(match[1]) * _SCALE[match[2]])
    activities = (
        int(float(match[3]) * _SCALE[match[4] or ""]) if match[3] else users * ACTIVITIES_PER_USER
    )
    if users < 1:
        raise ValueError(f"{text!r}: a size needs at least one user")
    return Size(text.strip().lower(), users, activities)


def embedded_dsn(directory: Path) -> str:
    """The benchmark's own cluster (not the tests' or the demo's), and a database in it."""
    cluster = Cluster(directory, dbname="plaudit_bench")
    return cluster.start()


def load(bench: BenchDB, size: Size) -> list[Figure]:
    """Drop plaudit, regenerate the demo data, vacuum it; the generator against a bare write."""
    bench.db.execute("demo_reset_schema")  # also drops the capture triggers on demo tables
    started = time.perf_counter()
    counts = load_demo_data(bench.db, size.users, size.activities)
    generated = time.perf_counter() - started
    vacuumed = bench.timed("vacuum_demo")
    rows = sum(counts.values())
    bench.rows("floor_drop")
    floor = bench.timed("floor_write", [rows])
    bench.rows("floor_drop")
    total = generated + vacuumed
    full = size.users >= 1_000_000
    return [
        Figure(
            "data",
            "generate the demo data (+ VACUUM)",
            seconds(total),
            baseline=f"{rows:,} rows via generate_series: {seconds(floor)}",
            ratio=total / floor,
            target=f"≤ {GENERATE_TARGET_S:.0f} s at 1M users" if full else "",
            met=total <= GENERATE_TARGET_S if full else None,
            note=f"VACUUM {seconds(vacuumed)}",
            values={
                "seconds": total,
                "vacuum_seconds": vacuumed,
                "baseline_seconds": floor,
                "rows": rows,
            },
        )
    ]


def with_timeout(project: Path, timeout: str, workdir: Path) -> Path:
    """A project reading the same rules with other timeouts: the benchmark must time every
    backfill to the end, where a real deployment would stop a rule at its timeout
    (plaudit.yaml's backfill_timeout is reported against each rule's time)."""
    source = project / CONFIG_FILE
    text = source.read_text() if source.exists() else ""
    # the two top-level keys are replaced as text: a YAML round trip would turn `on:` keys
    # (events) into booleans
    kept = [line for line in text.splitlines() if not _REPLACED.match(line)]
    rules = json.dumps(str(load_config(project).rules_dir))
    lines = [
        *kept,
        f"statement_timeout: {json.dumps(timeout)}",
        f"backfill_timeout: {json.dumps(timeout)}",
        f"rules: {rules}",
        "",
    ]
    (workdir / CONFIG_FILE).write_text("\n".join(lines))
    return workdir


def duration_seconds(text: str) -> float:
    """A plaudit.yaml duration (30s, 500ms, 5min, 1h; a bare number is milliseconds), in
    seconds: plaudit's own grammar (plaudit.model.config)."""
    if not is_duration(text):
        raise ValueError(f"{text!r} {DURATION_REQUIREMENT}")
    return milliseconds(text) / 1000


def install(bench: BenchDB, config: Config, rules: list[Rule]) -> None:
    """plaudit's schema and the rules, then the harness's helper functions."""
    engine = Engine(bench.db, config)  # shares the bench connection: not closed here
    engine.init()
    deploy_rules(engine, rules)
    bench.install_functions()
