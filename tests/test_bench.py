"""The benchmark suite (bench/, `make bench`) at a tiny size, so that it cannot rot.

Timings at this size mean nothing and are not asserted; what is asserted is that every
section runs against the current engine and rules, with sane ratios, and that the entry
appended to BENCHMARKS.md names the date, machine and command.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from plaudit.model.config import load_config
from plaudit.model.rules import load_rules

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ is a top-level package of the checkout, not installed
    sys.path.insert(0, str(REPO))

from bench.dataset import duration_seconds, parse_size, with_timeout  # noqa: E402
from bench.db import bare_sql  # noqa: E402
from bench.events import percentile  # noqa: E402
from bench.report import SECTIONS  # noqa: E402


def test_sizes():
    assert parse_size("10k") == parse_size("10K")
    assert (parse_size("1m").users, parse_size("1m").activities) == (1_000_000, 10_000_000)
    assert (parse_size("2k:30k").users, parse_size("2k:30k").activities) == (2_000, 30_000)
    assert (parse_size("300:6000").users, parse_size("300:6000").activities) == (300, 6_000)
    with pytest.raises(ValueError, match="is not a size"):
        parse_size("lots")


def test_the_run_project_changes_only_the_timeout(tmp_path):
    original = load_config(REPO)
    timed = load_config(with_timeout(REPO, "30min", tmp_path))
    assert timed.statement_timeout == "30min"
    assert (timed.rules_dir, timed.events, timed.schema) == (
        original.rules_dir,
        original.events,
        original.schema,
    )
    assert [duration_seconds(d) for d in ("60s", "500ms", "5min", "1h", "250")] == [
        60,
        0.5,
        300,
        3600,
        0.25,
    ]


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([3.0], 99) == 3.0


def test_every_bundled_rule_has_a_bare_baseline():
    config = load_config(REPO)
    for rule in load_rules(config.rules_dir, root=REPO):
        sql = bare_sql(rule, config)
        assert sql.startswith("SELECT count(*) AS users FROM ("), rule.slug
        if rule.kind != "award":
            assert "GROUP BY src.user_id" in sql and "HAVING" in sql, rule.slug


@pytest.mark.slow
def test_a_small_run_measures_every_section(dsn, tmp_path):
    out, figures_json = tmp_path / "BENCHMARKS.md", tmp_path / "figures.json"
    # a scratch database per test: the harness rebuilds its demo tables and plaudit schema
    args = ["--sizes", "300:6000", "--dsn", dsn, "--reps", "1", "--replay", "20"]
    args += ["--checks", "10", "--events", "150", "--batch-sizes", "40,150"]
    args += ["--out", str(out), "--json", str(figures_json)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", *args], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr

    [result] = json.loads(figures_json.read_text())
    figures = result["figures"]
    assert (result["users"], result["activities"]) == (300, 6000)
    assert {f["section"] for f in figures} == set(SECTIONS)
    assert not [f for f in figures if f["measured"] == "not measured"]
    for f in figures:
        if f["ratio"] is not None:
            assert math.isfinite(f["ratio"]) and f["ratio"] > 0, f

    rules = [r for r in load_rules(REPO / "rules", root=REPO) if r.enabled]
    backfilled = {f["item"] for f in figures if f["section"] == "backfill"}
    assert {f"{r.slug} ({r.kind})" for r in rules} <= backfilled
    assert all(f["values"]["seconds"] > 0 for f in figures if f["section"] == "backfill")

    by_section = {f["section"]: f for f in figures}
    replay = by_section["replay"]
    assert replay["ratio"] > 1, "replaying every event must cost more than one backfill"
    check = by_section["check"]["values"]
    assert 0 < check["p50"] <= check["p99"] and check["events"] >= 5
    runs = [f for f in figures if f["item"].startswith("`plaudit run`")]
    assert [f["item"] for f in runs] == ["`plaudit run`, batches of 40", "`plaudit run`, batches of 150"]
    assert all(f["values"]["events"] > 100 for f in runs)
    assert 0.5 < by_section["memory"]["ratio"] < 5

    text = out.read_text()
    assert text.startswith("# Benchmarks")
    assert "\n## 20" in text and "- machine: " in text and "- command: `python -m bench.run" in text
    assert "<dsn>" in text and dsn not in text
    assert "| section | item | measured | baseline (same run) | ratio | target | verdict |" in text
    assert "300 users, 6,000 activities" in done.stdout


@pytest.mark.slow
def test_a_backfill_only_run(dsn, tmp_path):
    figures_json = tmp_path / "figures.json"
    args = ["--sizes", "200:3000", "--dsn", dsn, "--reps", "1", "--sections", "backfill"]
    args += ["--no-append", "--json", str(figures_json)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", *args], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    [result] = json.loads(figures_json.read_text())
    assert {f["section"] for f in result["figures"]} == {"data", "backfill", "memory"}
    bad = subprocess.run(
        [sys.executable, "-m", "bench.run", "--sections", "speed"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "unknown section speed; choose from data, backfill, replay" in bad.stderr
