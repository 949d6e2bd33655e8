"""Backfill against the bare analyst queries, and the runner's memory during a full backfill.

The first repetition is `plaudit backfill` run as a user runs it, in its own process, whose
peak RSS is measured; further repetitions run in-process through the same engine API. Each
rule's time comes from the run log (`plaudit.run`: timed by plaudit.run_rule itself), so
every repetition is timed the same way. The bare queries run as one pass per repetition,
after the backfill pass on even repetitions and before it on odd ones, so that neither side
always finds the cache the other one warmed.

With `decompose`, the same pass also runs each rule's full kind query counted instead of
written ("rows alone"): what computing exact dates and progress costs, apart from writing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plaudit.model.config import Config
from plaudit.model.rules import Rule
from plaudit.runtime.engine import Engine

from .dataset import duration_seconds
from .db import BenchDB, bare_sql, rows_sql
from .report import Figure, seconds

# Kinds whose backfill must stay within 1.5x of the bare query; the others are reported.
BOUNDED_KINDS = ("count", "sum", "gauge")
BACKFILL_TARGET = 1.5
REPO = Path(__file__).resolve().parents[1]
# Peak RSS of a full backfill against the idle runner's: nothing is streamed into Python.
RSS_TARGET = 1.25


@dataclass
class Backfill:
    figures: list[Figure] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # best per rule
    bare_seconds: dict[str, float] = field(default_factory=dict)  # best per rule


def _peak_rss(plaudit_args: list[str]) -> tuple[float, int]:
    """Run the plaudit command line in its own process (bench/peak.py): its wall time and
    peak RSS in bytes."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as err:
        out = Path(tmp) / "peak"
        cmd = [sys.executable, "-m", "bench.peak", str(out), *plaudit_args]
        started = time.perf_counter()
        code = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err).returncode
        took = time.perf_counter() - started
        if code not in (0, 1) or not out.exists():  # 1: a rule failed; the run log says which
            err.seek(0)
            raise RuntimeError(
                f"plaudit {plaudit_args[4]} exited {code}: "
                f"{err.read().decode(errors='replace').strip()}"
            )
        return took, int(out.read_text())


def measure(
    bench: BenchDB,
    engine: Engine,
    config: Config,
    rules: list[Rule],
    reps: int,
    dsn: str,
    project: Path,
    decompose: bool,
    default_timeout: str,
) -> Backfill:
    plaudit = [
        "--dsn",
        dsn,
        "--project",
        str(project),
    ]
    bare = {rule.slug: bare_sql(rule, config) for rule in rules}
    kind_rows = {rule.slug: rows_sql(rule, config) for rule in rules}
    nulls = {rule.slug: [None] * len(rule.params) for rule in rules}
    fills: dict[str, list[float]] = defaultdict(list)
    bares: dict[str, list[float]] = defaultdict(list)
    computes: dict[str, list[float]] = defaultdict(list)
    last: dict[str, dict[str, Any]] = {}
    command = 0.0
    peak = 0

    def bare_pass() -> None:
        for rule in rules:
            bares[rule.slug].append(bench.timed_text(bare[rule.slug], nulls[rule.slug]))
            if decompose:
                computes[rule.slug].append(
                    bench.timed_as_run_rule(kind_rows[rule.slug], nulls[rule.slug])
                )

    for rep in range(reps):
        if rep % 2:  # before this repetition's backfill, on the grants of the previous one:
            bare_pass()  # composite rules read other badges' grants
        bench.rows("reset_grants")
        if rep == 0:
            command, peak = _peak_rss([*plaudit, "backfill"])
        else:
            engine.backfill(rules)
        for run in bench.rows("backfill_runs", [0]):
            fills[run["badge"]].append(run["seconds"])
            last[run["badge"]] = run
        if rep % 2 == 0:
            bare_pass()
    _, idle = _peak_rss([*plaudit, "render", rules[0].slug])

    result = Backfill()
    for rule in rules:
        run = last[rule.slug]
        fill, base = min(fills[rule.slug]), min(bares[rule.slug])
        compute = min(computes[rule.slug]) if decompose else None
        result.seconds[rule.slug], result.bare_seconds[rule.slug] = fill, base
        ok = run["status"] == "ok"
        bounded = rule.kind in BOUNDED_KINDS
        limit = rule.timeout or default_timeout
        over = f"; longer than its {limit} timeout" if fill > duration_seconds(limit) else ""
        result.figures.append(
            Figure(
                "backfill",
                f"{rule.slug} ({rule.kind})",
                seconds(fill) if ok else f"{run['status']}: {run['message']}",
                baseline=f"bare query {seconds(base)}",
                ratio=fill / base if ok and base else None,
                target=f"≤ {BACKFILL_TARGET}×" if bounded else "reported",
                met=(ok and fill <= BACKFILL_TARGET * base) if bounded else (None if ok else False),
                note=(f"rows alone {seconds(compute)}; " if compute is not None else "")
                + f"writes {run['granted']:,} grants, {run['progressed']:,} progress rows"
                + over,
                values={
                    "seconds": fill,
                    "baseline_seconds": base,
                    "rows_seconds": compute or 0.0,
                    "grants": run["granted"],
                    "progressed": run["progressed"],
                },
            )
        )
    total, total_bare = sum(result.seconds.values()), sum(result.bare_seconds.values())
    result.figures += [
        Figure(
            "backfill",
            f"all {len(rules)} rules",
            seconds(total),
            baseline=f"bare queries {seconds(total_bare)}",
            ratio=total / total_bare,
            note=f"best of {reps} per rule",
            values={"seconds": total, "baseline_seconds": total_bare},
        ),
        Figure(
            "backfill",
            "`plaudit backfill` command, all rules",
            seconds(command),
            baseline=f"bare queries {seconds(total_bare)}",
            ratio=command / total_bare,
            note="its own process: start-up, deploy check, summary",
            values={"seconds": command, "baseline_seconds": total_bare},
        ),
        Figure(
            "memory",
            "peak RSS of `plaudit backfill`",
            f"{peak / 2**20:.0f} MiB",
            baseline=f"idle runner (`plaudit render`) {idle / 2**20:.0f} MiB",
            ratio=peak / idle,
            target=f"flat: ≤ {RSS_TARGET}× the idle runner",
            met=peak <= RSS_TARGET * idle,
            values={"bytes": peak, "baseline_bytes": idle},
        ),
    ]
    return result
