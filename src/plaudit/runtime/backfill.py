"""A backfill of many rules on `jobs` connections at once (`plaudit backfill --jobs N`).

Each rule still runs as one `plaudit.run_rule` in its own transaction; what this adds is the
order. A rule starts once every selected rule it reads (badge('slug'), directly or through
other rules) has committed, so a composite sees its inputs' grants; among the rules ready to
start, the longest by its last complete backfill goes first (unknown: first of all), so that
the slowest rule does not start last and leave the other connections idle at the end.

Rules of one backfill touch disjoint rows (their own grants and progress), so they never wait
for each other, except to keep the leaderboard scores at commit (serialized, short) and for
a composite's statistics (009_leaderboard.sql, 002_run_rule.sql).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from plaudit.model.rules import Rule

if TYPE_CHECKING:
    from plaudit.runtime.engine import Engine, RunResult


def closure(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Every badge each badge reads, directly or through others: {slug: {dependency, ...}}
    from the (slug, dependency) edges. Deploy refuses cycles."""
    direct: dict[str, set[str]] = {}
    for slug, dependency in edges:
        direct.setdefault(slug, set()).add(dependency)
    found: dict[str, set[str]] = {}

    def walk(slug: str, seen: frozenset[str]) -> set[str]:
        if slug not in found:
            reads: set[str] = set()
            for dependency in direct.get(slug, ()):
                if dependency not in seen:  # a cycle (hand-edited definitions): cut
                    reads |= {dependency} | walk(dependency, seen | {dependency})
            found[slug] = reads
        return found[slug]

    return {slug: walk(slug, frozenset({slug})) for slug in direct}


class Schedule:
    """Which rule a free connection takes next. Thread-safe: every worker asks it."""

    def __init__(
        self,
        order: Sequence[Rule],
        reads: Mapping[str, set[str]],
        estimates: Mapping[str, float],
    ):
        self.order = list(order)
        selected = {rule.slug for rule in order}
        self.waits_for = {r.slug: reads.get(r.slug, set()) & selected for r in order}
        position = {rule.slug: i for i, rule in enumerate(order)}
        # longest first; never measured: before everything measured; ties: run order
        self.queue = sorted(
            order, key=lambda r: (-estimates.get(r.slug, float("inf")), position[r.slug]))
        self.done: set[str] = set()
        self.failed: BaseException | None = None
        self.lock = threading.Condition()

    def take(self) -> Rule | None:
        """The next rule to run, once one is ready; None when none is left (or a worker
        failed)."""
        with self.lock:
            while True:
                if self.failed is not None or not self.queue:
                    return None
                for rule in self.queue:
                    if self.waits_for[rule.slug] <= self.done:
                        self.queue.remove(rule)
                        return rule
                self.lock.wait()

    def finish(self, rule: Rule) -> None:
        with self.lock:
            self.done.add(rule.slug)
            self.lock.notify_all()

    def abort(self, error: BaseException) -> None:
        with self.lock:
            if self.failed is None:
                self.failed = error
            self.lock.notify_all()


def run(
    engines: Sequence[Engine],
    schedule: Schedule,
    run_one: Callable[[Engine, Rule], RunResult],
) -> dict[str, RunResult]:
    """Run the schedule with one worker per engine (the first in this thread); the results
    by slug. A worker's error (a lost connection) stops the others taking new rules and is
    raised once they finished the rules they were running."""
    results: dict[str, RunResult] = {}

    def work(engine: Engine) -> None:
        try:
            while (rule := schedule.take()) is not None:
                results[rule.slug] = run_one(engine, rule)
                schedule.finish(rule)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            schedule.abort(exc)

    threads = [threading.Thread(target=work, args=(e,), daemon=True) for e in engines[1:]]
    for thread in threads:
        thread.start()
    work(engines[0])
    for thread in threads:
        while thread.is_alive():
            if isinstance(schedule.failed, KeyboardInterrupt):
                # Ctrl-C reached this thread only: cancel the other connections' rules too
                # (each is recorded as failed and marked dirty, for the next backfill to
                # repair), again until they stop: one between statements misses a cancel
                for engine in engines[1:]:
                    engine.db.conn.cancel()
            thread.join(0.5)
    if schedule.failed is not None:
        raise schedule.failed
    return results
