"""`make bench`: the benchmark suite, at one or more sizes, against the bundled rules.

    python -m bench.run --sizes 10k,100k,1m           # what `make bench` runs
    python -m bench.run --sizes 2k --reps 1 --no-append --json out.json   # the CI smoke run

For each size: regenerate the demo data (sql/demo/), install plaudit and the rules of the
project, then measure, each against a baseline from the same run:
  data         the generator (+ VACUUM) vs writing as many rows with generate_series
  replay       a uniform slice of the history through plaudit.check, extrapolated, vs backfill
  backfill     each rule's backfill (dates, grants, progress, run log) vs the SQL an expert
               writes by hand for the same rows (checked equal) and vs its bare query
  memory       peak RSS of `plaudit backfill` vs the idle runner
  check        p50/p99 of plaudit.check on one new event vs the bare queries for it
  incremental  `plaudit run` events/s per batch size vs the bare queries per batch
  boards       leaderboards and ranks on synthetic grants (bench/boards.py) vs by hand
The run database is scratch: the demo tables and the plaudit schema are dropped and rebuilt.

    python -m bench.run --sizes 100k --citus 2   # one server vs Citus (bench/citus.py)
    python -m bench.run --sizes 1m --sections check,incremental --reuse   # the event side
                                                 # again, on the data an earlier run left

With --citus N, only the backfill of the bundled rules, on one server vs a local Citus
cluster of a coordinator and N workers (in .plaudit-bench-citus/), printed per rule.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from plaudit.errors import PlauditError
from plaudit.local.citus import CitusCluster, citus_workers
from plaudit.local.cluster import Cluster
from plaudit.model.config import Config, load_config
from plaudit.model.rules import Rule, load_rules
from plaudit.runtime.engine import Engine

from . import backfill as backfill_section
from . import boards as boards_section
from . import citus as citus_section
from . import events as event_sections
from .dataset import Size, embedded_dsn, install, load, parse_size, with_timeout
from .db import BenchDB
from .handwritten import HandwrittenMismatch
from .report import SECTIONS, SizeResult, append, entry, not_measured, table

REPO = Path(__file__).resolve().parents[1]
BENCH_CLUSTER = REPO / ".plaudit-bench"  # not the tests' .plaudit-test nor the demo's .plaudit
CITUS_CLUSTER = REPO / ".plaudit-bench-citus"  # --citus: a coordinator and its workers
# Up to this many activities the backfill is repeated 3 times by default (the best counts)
# and each rule's rows are also computed alone, unwritten; above, one pass of each: at 10M
# activities one backfill of every rule takes minutes.
SMALL_ACTIVITIES = 2_000_000
# measured in every run, except one of the leaderboards alone (they draw their own grants)
ALWAYS = frozenset({"data", "backfill", "memory"})


def measure(
    dsn: str,
    project: Path,
    size: Size,
    *,
    default_timeout: str,
    reps: int | None,
    replay_events: int,
    checks: int,
    events: int,
    batch_sizes: list[int],
    seed: float,
    sections: frozenset[str] = frozenset(SECTIONS),
    reuse: bool = False,
) -> SizeResult:
    """Every section at one size, in an order where each finds the state it needs: the
    replay starts from no grants, the checks and `plaudit run` from a full backfill. The
    data and the backfill (with memory) are always measured; the other sections on demand."""
    config = load_config(project)
    rules = [r for r in load_rules(config.rules_dir, root=project) if r.enabled]
    result = SizeResult(size.label, size.users, size.activities)
    reps = reps or (3 if size.activities <= SMALL_ACTIVITIES else 1)
    bench = BenchDB(dsn, config.schema)
    try:
        if sections == {"boards", *ALWAYS}:
            # the boards draw their own grants: the app data only has to exist for the rules
            say(f"{size.label}: leaderboards on synthetic grants of {size.users:,} users")
            load(bench, parse_size("1k"))
            result.activities = 0  # none generated at this size: the header says so
            install(bench, config, rules)
            for figure in boards_section.measure(bench, size.users, seed):
                result.add(figure)
            return result
        if reuse:
            engine = _reuse(bench, config, rules, dsn, size, result)
        else:
            say(f"{size.label}: generating {size.users:,} users, {size.activities:,} activities")
            for figure in load(bench, size):
                result.add(figure)
            install(bench, config, rules)
            engine = Engine(bench.db, config, dsn)  # with its watchdog, as `plaudit run` has
            missing = event_sections.missing_api()

            replayed: event_sections.Replay | str = missing or ""
            if not missing and "replay" in sections:
                say(f"{size.label}: replaying {replay_events:,} past events through plaudit.check")
                replayed = event_sections.replay(bench, engine, config, replay_events, seed)

            say(f"{size.label}: backfill vs hand-written SQL and bare queries, "
                f"{reps} repetition(s)")
            decompose = size.activities <= SMALL_ACTIVITIES
            fill = backfill_section.measure(
                bench, engine, config, rules, reps, dsn, project, decompose, default_timeout,
                size.users,
            )
            if "replay" in sections:
                result.add(
                    not_measured("replay", "history replayed event by event", replayed)
                    if isinstance(replayed, str)
                    else event_sections.replay_figure(replayed, rules, fill.seconds)
                )
            for figure in fill.figures:
                result.add(figure)

            if missing:
                for section in ("check", "incremental"):
                    if section in sections:
                        result.add(not_measured(section, section, missing))
                return result
        if "check" in sections:
            say(f"{size.label}: {checks:,} single-event checks")
            for figure in event_sections.check_latency(bench, engine, config, rules, checks, seed):
                result.add(figure)
        if "incremental" in sections:
            say(f"{size.label}: `plaudit run` on {events:,} new events per batch size")
            for figure in event_sections.incremental(
                bench, engine, config, rules, events, batch_sizes, seed
            ):
                result.add(figure)
        if "boards" in sections and not reuse:  # last: it replaces the grants
            say(f"{size.label}: leaderboards on synthetic grants of {size.users:,} users")
            for figure in boards_section.measure(bench, size.users, seed):
                result.add(figure)
    finally:
        bench.close()
    return result


def _reuse(
    bench: BenchDB, config: Config, rules: list[Rule], dsn: str, size: Size, result: SizeResult
) -> Engine:
    """--reuse: the data and grants an earlier run left, the rules deployed and those deploy
    marks due (their compiled SQL changed) backfilled, so that incremental runs trust them
    as they would on a site; the engine for the event sections."""
    users = bench.one("users_count")["users"]
    if users != size.users:
        raise PlauditError(
            f"--reuse: the benchmark database holds {users:,} users, not {size.users:,}; "
            "run once without --reuse at this size first"
        )
    for section, item in (("data", "the demo data"), ("backfill", "the backfill")):
        result.add(not_measured(section, item, "--reuse: the data and grants of an earlier run"))
    install(bench, config, rules)
    engine = Engine(bench.db, config, dsn)
    due = set(engine.rule_states()[1])
    if due:
        say(f"{size.label}: backfilling the {len(due)} rules deploy marks due")
        engine.backfill([rule for rule in rules if rule.slug in due])
    return engine


def say(message: str) -> None:
    click.echo(f"[{time.strftime('%H:%M:%S')}] {message}", err=True)


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> list[Size]:
    try:
        return [parse_size(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _sections(ctx: click.Context, param: click.Parameter, value: str) -> frozenset[str]:
    chosen = {part.strip() for part in value.split(",") if part.strip()}
    unknown = chosen - set(SECTIONS)
    if unknown:
        raise click.BadParameter(
            f"unknown section {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )
    return frozenset(chosen | ALWAYS)


def _ints(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of numbers like 1000,5000") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--sizes",
    default="10k,100k,1m",
    show_default=True,
    callback=_sizes,
    help="Comma-separated sizes: 10k = 10,000 users and 100,000 activities; "
    "USERS:ACTIVITIES (2k:30k) sets both.",
)
@click.option(
    "--dsn",
    help="A scratch database to use (its demo tables and plaudit schema "
    "are rebuilt). Default: the benchmark's own cluster in .plaudit-bench/.",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO,
    show_default=True,
    help="The plaudit project whose rules are measured.",
)
@click.option(
    "--sections",
    default=",".join(SECTIONS),
    show_default=True,
    callback=_sections,
    help="What to measure; data, backfill and memory always are (the others need them).",
)
@click.option(
    "--timeout",
    default="30min",
    show_default=True,
    help="Timeout of the rule runs, so that every backfill is timed to its end.",
)
@click.option(
    "--reps",
    type=click.IntRange(min=1),
    help="Repetitions of the backfill section, the best counting per rule. "
    f"Default: 3 up to {SMALL_ACTIVITIES:,} activities, else 1.",
)
@click.option(
    "--replay",
    "replay_events",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Past events replayed through plaudit.check.",
)
@click.option(
    "--checks",
    default=500,
    show_default=True,
    type=click.IntRange(min=2),
    help="Single-event checks for the latency percentiles.",
)
@click.option(
    "--events",
    default=10000,
    show_default=True,
    type=click.IntRange(min=1),
    help="New events per batch size for `plaudit run`.",
)
@click.option(
    "--batch-sizes",
    default="1000,5000",
    show_default=True,
    callback=_ints,
    help="Batch sizes of `plaudit run`.",
)
@click.option("--seed", default=0.42, show_default=True, help="Seed of the sampling (-1..1).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=REPO / "BENCHMARKS.md",
    show_default=True,
    help="Where the entry is appended.",
)
@click.option(
    "--reuse",
    is_flag=True,
    help="Measure only the check and incremental sections, on the data and grants an earlier "
    "run at the same size left in the database (the rules deploy marks due are backfilled "
    "first).",
)
@click.option("--no-append", is_flag=True, help="Print only; leave --out alone.")
@click.option("--stop-cluster", is_flag=True, help="Stop the cluster in .plaudit-bench/ and exit.")
@click.option(
    "--citus",
    "workers",
    type=click.IntRange(min=1),
    help="Compare the backfill on one server with a local Citus cluster of a coordinator "
    "and this many workers (bench/citus.py); nothing else is measured.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every figure as JSON here.",
)
def main(
    sizes: list[Size],
    dsn: str | None,
    project: Path,
    sections: frozenset[str],
    timeout: str,
    reps: int | None,
    replay_events: int,
    checks: int,
    events: int,
    batch_sizes: list[int],
    seed: float,
    out: Path,
    no_append: bool,
    reuse: bool,
    stop_cluster: bool,
    workers: int | None,
    json_out: Path | None,
) -> None:
    """Benchmark plaudit on the demo app at each size; print and append the figures."""
    if stop_cluster:
        Cluster(BENCH_CLUSTER).stop()
        if citus_workers(CITUS_CLUSTER):
            CitusCluster(CITUS_CLUSTER, citus_workers(CITUS_CLUSTER)).stop()
        return
    if workers:
        _citus(sizes, workers, project, timeout, json_out)
        return
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="plaudit-bench-"))
    try:
        target = dsn or embedded_dsn(BENCH_CLUSTER)
        default_timeout = load_config(project).backfill_timeout
        timed = with_timeout(project.resolve(), timeout, workdir)
        results = [
            measure(
                target,
                timed,
                size,
                default_timeout=default_timeout,
                reps=reps,
                replay_events=replay_events,
                checks=checks,
                events=events,
                batch_sizes=batch_sizes,
                seed=seed,
                sections=sections,
                reuse=reuse,
            )
            for size in sizes
        ]
        bench = BenchDB(target, load_config(project).schema)
        server = bench.one("server") | {"timeout": f"{timeout} (plaudit.yaml: {default_timeout})"}
        bench.close()
    except (PlauditError, HandwrittenMismatch) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args = ["<dsn>" if dsn and arg == dsn else arg for arg in sys.argv[1:]]
    command = " ".join(["python -m bench.run", *map(shlex.quote, args)])
    text = entry(results, command, server, time.perf_counter() - started)
    for result in results:
        click.echo(f"\n{result.users:,} users, {result.activities:,} activities\n")
        click.echo(table(result))
    if not no_append:
        append(out, text)
        say(f"appended to {out}")
    if json_out:
        json_out.write_text(json.dumps([r.as_json() for r in results], indent=2) + "\n")


def _citus(sizes: list[Size], workers: int, project: Path, timeout: str,
           json_out: Path | None) -> None:
    """--citus: the backfill on one server vs the Citus cluster, per size."""
    workdir = Path(tempfile.mkdtemp(prefix="plaudit-bench-"))
    found = []
    try:
        for size in sizes:
            sides = citus_section.compare(size, workers, project.resolve(), timeout, workdir,
                                          BENCH_CLUSTER, CITUS_CLUSTER, say)
            click.echo(f"\n{size.users:,} users, {size.activities:,} activities\n")
            click.echo(citus_section.table(sides))
            found.append({"size": size.label, "users": size.users,
                          "activities": size.activities,
                          "sides": [{"name": s.name, "load_s": s.load_s, "routes": s.routes,
                                     "rules": {k: {"seconds": v[0], "granted": v[1]}
                                               for k, v in s.rules.items()}}
                                    for s in sides]})
    except PlauditError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if json_out:
        json_out.write_text(json.dumps(found, indent=2) + "\n")


if __name__ == "__main__":
    main()
