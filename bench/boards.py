"""Leaderboards at scale (issue 14): synthetic grants over the size's users (about five
each), then the boards an app shows, each against the query one would write by hand over
user_badge, measured in the same run; what keeping the scores costs a bulk insert; and the
statistics of every badge.

    python -m bench.run --sizes 1m --sections boards
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from .db import BenchDB
from .events import percentile
from .report import Figure, seconds

TOP_TARGET = 0.050  # s: a top 10 and a rank_of at 1M users / 5M grants
BOARD_TARGET = 0.200  # s: a period or group board
STATS_TARGET = 5.0  # s: `plaudit stats` for every badge
GRANTS_PER_USER = 5.6  # draws per user; duplicates collapse to about 5 grants each
REPS = 20


def _best(run: Callable[[], object], reps: int = REPS) -> tuple[float, float]:
    """p50 and p99 of `reps` runs, in seconds."""
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return percentile(times, 50), percentile(times, 99)


def _ms(s: float) -> str:
    return f"{s * 1000:.1f} ms"


def measure(bench: BenchDB, users: int, seed: float) -> list[Figure]:
    draws = int(users * GRANTS_PER_USER)
    bench.rows("boards_reset")
    bench.rows("boards_triggers_off")
    bare = bench.timed("boards_grants", [draws, users])
    bench.rows("boards_reset")
    bench.rows("boards_triggers_on")
    kept = bench.timed("boards_grants", [draws, users])
    counts = bench.one("boards_counts")
    bench.rows("boards_vacuum")
    bench.rows("boards_groups")
    scale = f"{counts['users']:,} users, {counts['grants']:,} grants"
    figures = [Figure(
        "boards", "bulk insert of the grants, scores kept by the triggers", seconds(kept),
        baseline=f"the same insert, triggers off: {seconds(bare)}", ratio=kept / bare,
        note=scale, values={"seconds": kept, "baseline_seconds": bare, **counts})]

    hand_top = bench.timed("boards_hand_top")
    for by, period, target in (("points", "all", TOP_TARGET), ("badges", "all", TOP_TARGET),
                               ("points", "month", BOARD_TARGET),
                               ("points", "year", BOARD_TARGET),
                               ("points", "week", BOARD_TARGET)):
        p50, p99 = _best(lambda by=by, period=period: bench.rows(
            "boards_top", [by, period, None, None]))
        figures.append(Figure(
            "boards", f"top 10 by {by}, period {period}: p50 / p99",
            f"{_ms(p50)} / {_ms(p99)}", baseline=f"by hand (all time): {_ms(hand_top)}",
            ratio=p99 / hand_top, target=f"≤ {target * 1000:.0f} ms", met=p99 <= target,
            values={"p50": p50, "p99": p99, "baseline": hand_top}))
    p50, p99 = _best(lambda: bench.rows("boards_top", ["points", "all", "bench_class", "77"]))
    figures.append(Figure(
        "boards", "top 10 of a group of 30, all time: p50 / p99", f"{_ms(p50)} / {_ms(p99)}",
        baseline=f"by hand (everyone): {_ms(hand_top)}", ratio=p99 / hand_top,
        target=f"≤ {BOARD_TARGET * 1000:.0f} ms", met=p99 <= BOARD_TARGET,
        values={"p50": p50, "p99": p99, "baseline": hand_top}))

    rng = random.Random(seed)
    picks = [rng.randint(1, users) for _ in range(REPS * 2)]
    hand_rank = bench.timed("boards_hand_rank", [picks[0]])
    for period, target in (("all", TOP_TARGET), ("month", BOARD_TARGET)):
        times = []
        for user in picks:
            started = time.perf_counter()
            bench.rows("boards_rank", [user, "points", period])
            times.append(time.perf_counter() - started)
        p50, p99 = percentile(times, 50), percentile(times, 99)
        figures.append(Figure(
            "boards", f"rank_of a random user by points, period {period}: p50 / p99",
            f"{_ms(p50)} / {_ms(p99)}", baseline=f"by hand (all time): {_ms(hand_rank)}",
            ratio=p99 / hand_rank, target=f"≤ {target * 1000:.0f} ms", met=p99 <= target,
            note=f"{len(picks)} users", values={"p50": p50, "p99": p99, "baseline": hand_rank}))
    hand_stats = bench.timed("boards_hand_stats")
    per_level = bench.timed("boards_stats")
    weekly = bench.timed("boards_weeks")
    figures.append(Figure(
        "boards", "statistics: badge_stats + grants_per_week, every badge",
        seconds(per_level + weekly), baseline=f"holders per level by hand: {seconds(hand_stats)}",
        ratio=(per_level + weekly) / hand_stats, target=f"≤ {STATS_TARGET:.0f} s",
        met=per_level + weekly <= STATS_TARGET,
        note=f"badge_stats {seconds(per_level)}, grants_per_week {seconds(weekly)}",
        values={"badge_stats": per_level, "grants_per_week": weekly, "baseline": hand_stats}))
    return figures
