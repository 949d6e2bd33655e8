"""The hand-written baseline: per rule, the SQL an expert writes without plaudit for the
same grants and progress (bench/handwritten.sql), and the check that it wrote exactly what
plaudit wrote.

The SQL is generated per kind from the rule's definition, so every bundled rule of the
kinds count, sum, gauge, streak and growth gets one. Award rules get none: their query is
already the grants, so the bare query (bench/baseline.sql) is the hand-written one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2

from plaudit.model.config import Config
from plaudit.model.kinds import KINDS as REGISTERED_KINDS
from plaudit.model.rules import Rule
from plaudit.sqlgen.render import output_columns, render_query, sql_string

from .db import BENCH_DIR, BenchDB

# Kinds with a hand-written baseline; an award's bare query is its hand-written SQL.
KINDS = ("count", "sum", "gauge", "streak", "growth")
AWARD_REASON = "award: the rule's query is the grants, so the bare query is the hand-written one"
EXAMPLES = 3  # differing rows quoted per side in a mismatch


@dataclass(frozen=True)
class Handwritten:
    """A rule's hand-written SQL (one statement, upserting into bench.*), or why none."""

    rule: Rule
    sql: str | None
    reason: str = ""


class HandwrittenMismatch(RuntimeError):
    """The hand-written SQL and plaudit wrote different rows: the baseline is wrong, or
    plaudit is; either way no ratio against it means anything."""


@cache
def _macros() -> Any:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(BENCH_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["sqlstring"] = sql_string
    return env.get_template("handwritten.sql").module


def handwritten(rule: Rule, config: Config) -> Handwritten:
    """The hand-written SQL of `rule`'s backfill, from its definition and rendered query."""
    if rule.kind == "award":
        return Handwritten(rule, None, AWARD_REASON)
    if rule.kind not in KINDS:
        return Handwritten(rule, None, f"no hand-written baseline for the kind {rule.kind}")
    query = render_query(rule, "backfill", config)
    columns = output_columns(rule, query) or ()
    macro = getattr(_macros(), rule.kind)
    has_scope = "scope" in columns
    if rule.kind in ("streak", "growth"):
        period = rule.period or REGISTERED_KINDS[rule.kind].default_period
        timezone = rule.timezone or config.timezone
        if rule.kind == "streak":
            sql = macro(rule, query, has_scope, period, timezone)
        else:
            sql = macro(rule, query, has_scope, "amount" in columns, period, timezone)
    else:
        sql = macro(rule, query, has_scope)
    return Handwritten(rule, str(sql).strip())


def create_tables(bench: BenchDB) -> None:
    """bench.user_badge and bench.user_progress, empty, shaped like plaudit's."""
    bench.script("handwritten_tables")


def reset(bench: BenchDB) -> None:
    bench.rows("handwritten_reset")


def differences(bench: BenchDB, slug: str) -> list[dict[str, Any]]:
    """What plaudit and the hand-written SQL do not both hold for one badge (EXCEPT both
    ways): one row per (rows, side) with its count and a few examples. Empty when equal."""
    return bench.rows("handwritten_diff", [slug, EXAMPLES])


def check_equal(bench: BenchDB, rules: list[Rule]) -> None:
    """Raise HandwrittenMismatch, naming every rule and what differs, unless the hand-written
    tables hold exactly plaudit's grants and progress for each of `rules`."""
    problems = []
    for rule in rules:
        for d in differences(bench, rule.slug):
            examples = "; ".join(map(str, d["examples"]))
            problems.append(
                f"{rule.slug} ({rule.kind}): {d['n']:,} {d['rows']} rows {d['side']}, "
                f"e.g. {examples}"
            )
    if problems:
        raise HandwrittenMismatch(
            "the hand-written SQL (bench/handwritten.sql) and plaudit disagree, so no ratio "
            "against it would mean anything:\n  " + "\n  ".join(problems)
        )
