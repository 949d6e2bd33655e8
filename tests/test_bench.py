"""The benchmark suite (bench/, `make bench`) at a tiny size, so that it cannot rot.

Timings at this size mean nothing and are not asserted; what is asserted is that every
section runs against the current engine and rules, with sane ratios, that the entry
appended to BENCHMARKS.md names the date, machine and command, and that the hand-written
baseline (bench/handwritten.sql) writes exactly what plaudit writes: on the demo data for
every bundled rule, and on every case of the kinds' specification (tests/kinds/), so that
it cannot drift from plaudit's semantics.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from plaudit.authoring.testcases import load_cases
from plaudit.model.config import load_config
from plaudit.model.rules import load_rules
from plaudit.runtime.deploy import deploy_rules
from plaudit.runtime.engine import Engine

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ is a top-level package of the checkout, not installed
    sys.path.insert(0, str(REPO))

from bench import handwritten as hand  # noqa: E402
from bench.dataset import duration_seconds, install, load, parse_size, with_timeout  # noqa: E402
from bench.db import BenchDB, bare_sql  # noqa: E402
from bench.events import batches, percentile  # noqa: E402
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


def test_the_bare_baseline_cuts_the_queue_as_take_events_does():
    # the next 2 events, then up to 2 later ones of their users among the next 20
    queued = [{"user_id": u, "n": i} for i, u in enumerate([7, 8, 7, 9, 7, 7, 9])]
    cut = [[e["n"] for e in batch] for batch in batches(queued, 2)]
    assert cut == [[0, 1, 2, 4], [3, 5, 6]]
    far = [{"user_id": u, "n": i} for i, u in enumerate([7, *range(20, 41), 7])]
    assert [len(batch) for batch in batches(far, 2)][0] == 2  # the last 7: 21 after the head


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


def test_every_bundled_rule_has_a_handwritten_baseline_or_says_why_not():
    config = load_config(REPO)
    for rule in load_rules(config.rules_dir, root=REPO):
        written = hand.handwritten(rule, config)
        if rule.kind == "award":
            assert (written.sql, written.reason) == (None, hand.AWARD_REASON), rule.slug
        else:
            assert rule.kind in hand.KINDS, rule.slug
            assert written.sql is not None, rule.slug
            assert "INSERT INTO bench.user_badge" in written.sql, rule.slug
            assert "INSERT INTO bench.user_progress" in written.sql, rule.slug
            assert written.sql.count("ON CONFLICT") == 2, rule.slug
            # dates by window functions (a gauge's are plain filtered minimums)
            assert ("OVER" in written.sql) == (rule.kind != "gauge"), rule.slug


def _run_by_hand(bench: BenchDB, written: hand.Handwritten) -> None:
    assert written.sql is not None
    bench.timed_transaction(written.sql, [None] * len(written.rule.params))


def test_the_handwritten_sql_writes_what_plaudit_writes_on_the_demo_data(dsn):
    config = load_config(REPO)
    rules = [r for r in load_rules(config.rules_dir, root=REPO) if r.enabled]
    bench = BenchDB(dsn, config.schema)
    try:
        load(bench, parse_size("300:6000"))
        install(bench, config, rules)
        assert all(run.status == "ok" for run in Engine(bench.db, config).backfill(rules))
        hand.create_tables(bench)
        checked = [r for r in rules if r.kind in hand.KINDS]
        assert len(checked) == 16
        for rule in checked:
            _run_by_hand(bench, hand.handwritten(rule, config))
        hand.check_equal(bench, checked)
        granted = bench.db.conn.execute("SELECT count(*) AS n FROM bench.user_badge").fetchone()
        # the data crosses thresholds: the tables are not equal by being empty
        assert granted and granted["n"] > 100

        # the check fails loudly, naming the rule and the rows, when one row differs
        bench.db.conn.execute(
            "UPDATE bench.user_progress SET value = value + 1 WHERE (user_id, badge) = "
            "(SELECT min(user_id), 'commentator' FROM bench.user_progress WHERE badge = 'commentator')"
        )
        bench.db.conn.execute(
            "DELETE FROM bench.user_badge WHERE (user_id, badge, level) = "
            "(SELECT min(user_id), 'sharpshooter', 'bronze' FROM bench.user_badge "
            " WHERE badge = 'sharpshooter' AND level = 'bronze')"
        )
        with pytest.raises(hand.HandwrittenMismatch) as failed:
            hand.check_equal(bench, checked)
        message = str(failed.value)
        assert "commentator (count): 1 progress rows only in plaudit's, e.g. {" in message
        assert "commentator (count): 1 progress rows only in the hand-written" in message
        assert "sharpshooter (gauge): 1 grant rows only in plaudit's" in message
        assert "meaning_builder" not in message
    finally:
        bench.close()


KINDS = REPO / "tests" / "kinds"


def test_the_handwritten_sql_writes_what_plaudit_writes_in_every_kind_case(dsn):
    """The kinds' specification pins ties, scopes ('' and NULL), negative amounts, time zones
    and DST, weeks and months: each backfill case, plaudit's rows against the hand-written."""
    config = load_config(KINDS)
    rules = load_rules(config.rules_dir, root=KINDS)
    cases, problems = load_cases(config, rules)
    assert problems == []
    cases = [c for c in cases if c.rule.kind in hand.KINDS and "backfill" in c.modes]
    assert {c.rule.kind for c in cases} == set(hand.KINDS)
    bench = BenchDB(dsn, config.schema)
    try:
        bench.db.script((KINDS / "activity.sql").read_text(), "activity.sql")
        engine = Engine(bench.db, config)
        engine.init()
        deploy_rules(engine, rules)
        hand.create_tables(bench)
        failures = []
        for case in cases:
            assert set(case.given) <= {"activity"}, case.id
            bench.rows("reset_grants")
            hand.reset(bench)
            bench.db.conn.execute("TRUNCATE activity")
            given = case.given.get("activity", [])
            rows = (
                f"SELECT jsonb_agg(to_jsonb(g)) FROM ({given}) AS g"
                if isinstance(given, str)
                else "SELECT $1::jsonb"
            )
            bench.db.conn.execute(
                f"INSERT INTO activity SELECT * FROM jsonb_populate_recordset(NULL::activity, ({rows}))",
                [] if isinstance(given, str) else [json.dumps(given, default=str)],
            )
            run = engine.run_rule(case.rule, "backfill", case.params)
            assert run.status == "ok", (case.id, run.message)
            _run_by_hand(bench, hand.handwritten(case.rule, config))
            diff = hand.differences(bench, case.rule.slug)
            if diff:
                failures.append((case.id, diff))
        assert not failures, "\n".join(f"{case}: {diff}" for case, diff in failures)
        assert len(cases) > 40
    finally:
        bench.close()


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

    # --reuse: the event side again on the data this run left, nothing regenerated
    reused = subprocess.run(
        [sys.executable, "-m", "bench.run", "--sizes", "200:3000", "--dsn", dsn, "--reuse",
         "--sections", "check,incremental", "--checks", "6", "--events", "60",
         "--batch-sizes", "25", "--no-append", "--json", str(figures_json)],
        cwd=REPO, capture_output=True, text=True,
    )
    assert reused.returncode == 0, reused.stderr
    [result] = json.loads(figures_json.read_text())
    measured = {f["section"] for f in result["figures"] if f["measured"] != "not measured"}
    assert measured == {"check", "incremental"}
    assert "generating" not in reused.stderr
    other_size = subprocess.run(
        [sys.executable, "-m", "bench.run", "--sizes", "1k", "--dsn", dsn, "--reuse",
         "--no-append"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert other_size.returncode == 1
    assert "holds 200 users, not 1,000; run once without --reuse" in other_size.stderr

    # bench/drain.py: a backlog drained, per rule and per function
    drained = subprocess.run(
        [sys.executable, "-m", "bench.drain", "--dsn", dsn, "--events", "40",
         "--batch-size", "15"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert drained.returncode == 0, drained.stderr
    assert "events in batches of 15: " in drained.stdout
    assert " runs " in drained.stdout and "run_batch" in drained.stdout

    bad = subprocess.run(
        [sys.executable, "-m", "bench.run", "--sections", "speed"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "unknown section speed; choose from data, backfill, replay" in bad.stderr
