"""Where a batch's time goes: `python -m bench.drain [--events N] [--batch-size B]`.

On the database an earlier `python -m bench.run` left (its cluster in .plaudit-bench/, or
--dsn), adds N new activities (enqueued by the capture triggers, as the incremental section
does), drains the queue in batches of B as `plaudit run` does, and prints the events per
second, each rule's time per run from the run log, and the time of plaudit's own functions
in the server (pg_stat_user_functions, track_functions = all, for this session): the
profile BENCHMARKS.md's figures of issue 16's third round come from. Nothing is appended
anywhere; run it twice to compare two versions on the same data.
"""

from __future__ import annotations

import time

import click

from plaudit.model.config import load_config
from plaudit.runtime.engine import Engine
from plaudit.runtime.runner import Runner

from .dataset import embedded_dsn
from .db import BenchDB
from .run import BENCH_CLUSTER, REPO


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--events", default=10000, show_default=True, type=click.IntRange(min=1),
              help="New activities added (each enqueues an event per captured table).")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Events per batch, as `plaudit run --batch-size`.")
@click.option("--dsn", help="The benchmark database. Default: the one in .plaudit-bench/.")
@click.option("--seed", default=0.42, show_default=True, help="Seed of the new activity (-1..1).")
@click.option("--functions", default=12, show_default=True, type=click.IntRange(min=0),
              help="How many of plaudit's functions to list, costliest first.")
def main(events: int, batch_size: int, dsn: str | None, seed: float, functions: int) -> None:
    """Drain a backlog of new events on the benchmark database; per rule and per function."""
    target = dsn or embedded_dsn(BENCH_CLUSTER)
    config = load_config(REPO)
    bench = BenchDB(target, config.schema)
    try:
        engine = Engine(bench.db, config, target)
        bench.rows("clear_queue")
        bench.rows("new_activity", [events, bench.one("last_activity")["at"], seed])
        queued = bench.one("queue_length")["events"]
        mark = bench.one("last_run")["run_id"]
        bench.rows("track_functions")
        before = {row["function"]: row for row in bench.rows("function_costs")}
        started = time.perf_counter()
        Runner(engine, batch_size=batch_size).drain()
        took = time.perf_counter() - started
        click.echo(f"{queued:,} events in batches of {batch_size:,}: {took:.2f} s, "
                   f"{queued / took:,.0f} events/s")
        for cost in bench.rows("rule_costs", [mark]):
            click.echo(f"  {cost['badge']:<22} {cost['runs']:>3} runs "
                       f"{cost['seconds'] / cost['runs'] * 1000:>9.1f} ms a run")
        # a backend flushes its statistics at most once a second: this session's last
        # second goes out when the statement asking for it ends
        bench.rows("flush_statistics")
        spent = []
        for row in bench.rows("function_costs"):
            was = before.get(row["function"], {"calls": 0, "total_ms": 0.0, "self_ms": 0.0})
            spent.append((row["total_ms"] - was["total_ms"], row["self_ms"] - was["self_ms"],
                          row["calls"] - was["calls"], row["function"]))
        for total_ms, self_ms, calls, function in sorted(spent, reverse=True)[:functions]:
            click.echo(f"  {function:<30} {calls:>6} calls {total_ms:>9.1f} ms, "
                       f"{self_ms:>9.1f} ms itself")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
