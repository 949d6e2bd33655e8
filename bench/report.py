"""Figures, the printed table and the BENCHMARKS.md entry."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SECTIONS = ("data", "backfill", "replay", "incremental", "check", "memory", "boards")


@dataclass
class Figure:
    """One measured line: a figure, the baseline measured in the same run, their ratio."""

    section: str
    item: str
    measured: str
    baseline: str = ""
    ratio: float | None = None  # measured / baseline; for replay, replay / backfill
    # measured / a second baseline named second in `baseline` (backfill: the bare query,
    # after the hand-written SQL)
    second_ratio: float | None = None
    target: str = ""
    met: bool | None = None  # None: no target, reported only
    note: str = ""
    values: dict[str, float] = field(default_factory=dict)  # raw numbers, for JSON readers

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]

    @property
    def ratios(self) -> str:
        """The ratio cell: both ratios, in the order `baseline` names their baselines."""
        if self.second_ratio is None:
            return ratio(self.ratio)
        return f"{ratio(self.ratio) or '–'}; {ratio(self.second_ratio)}"


def not_measured(section: str, item: str, reason: str) -> Figure:
    return Figure(section, item, "not measured", note=reason)


@dataclass
class SizeResult:
    label: str
    users: int
    activities: int
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "users": self.users,
            "activities": self.activities,
            "figures": [asdict(f) | {"verdict": f.verdict} for f in self.figures],
        }


def seconds(s: float) -> str:
    if s >= 100:
        return f"{s:,.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1000:.1f} ms"


def ratio(r: float | None) -> str:
    if r is None:
        return ""
    return f"{r:,.0f}×" if r >= 100 else f"{r:.2f}×"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        memory = ""
    system = f"{platform.system()} {platform.machine()}"
    return f"{platform.node()}: {system}, {os.cpu_count()} CPUs ({cpu}){memory}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def table(result: SizeResult) -> str:
    """A markdown table of one size's figures (also what the terminal shows)."""
    lines = [
        _row(["section", "item", "measured", "baseline (same run)", "ratio", "target", "verdict"]),
        _row(["---"] * 7),
    ]
    for f in result.figures:
        measured = f.measured + (f" ({f.note})" if f.note else "")
        cells = [f.section, f.item, measured, f.baseline, f.ratios, f.target, f.verdict]
        lines.append(_row(cells))
    return "\n".join(lines)


def scale_table(results: list[SizeResult]) -> str:
    """The headline figures side by side, one column per size: how cost grows."""
    keys: list[tuple[str, str]] = []
    for result in results:
        for f in result.figures:
            if (f.section, f.item) not in keys:
                keys.append((f.section, f.item))
    header = ["figure"] + [f"{r.users:,} users / {r.activities:,} activities" for r in results]
    lines = [_row(header), _row(["---"] * len(header))]
    for section, item in keys:
        cells = [f"{section}: {item}"]
        for result in results:
            found = [f for f in result.figures if (f.section, f.item) == (section, item)]
            cells.append(
                f"{found[0].measured} ({found[0].ratios})".replace(" ()", "") if found else ""
            )
        lines.append(_row(cells))
    return "\n".join(lines)


def entry(results: list[SizeResult], command: str, server: dict[str, Any], took: float) -> str:
    """One dated BENCHMARKS.md entry: machine, command, server, a table per size."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"## {now}",
        "",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        f"- server: {server['version'].split(' on ')[0]}; "
        f"shared_buffers {server['shared_buffers']}, work_mem {server['work_mem']}, "
        f"jit {server['jit']}, max_parallel_workers_per_gather {server['parallel_workers']}",
        f"- rule runs: jit off (plaudit.run_rule), timeout {server['timeout']}",
        f"- whole run: {seconds(took)}",
        "",
    ]
    for result in results:
        parts += [
            f"### {result.users:,} users, {result.activities:,} activities"
            if result.activities else f"### {result.users:,} users (synthetic grants only)",
            "",
            table(result),
            "",
        ]
    if len(results) > 1:
        parts += ["### Scale", "", scale_table(results), ""]
    return "\n".join(parts)


def append(path: Path, text: str) -> None:
    """Append an entry; a new file gets a title first."""
    if not path.exists():
        path.write_text("# Benchmarks\n\nEntries appended by `make bench` (bench/run.py).\n\n")
    with path.open("a") as fh:
        fh.write("\n" + text)
