"""The kind registry: what plaudit knows about each kind of rule, in one place.

A kind turns the rows of a rule's query into grants and progress. Its SQL is one Jinja
macro, `sql/kinds/<kind>.sql` (named after the kind, taking the rendered query and the
arguments render.py builds from this entry); everything else plaudit needs to know about
it is its entry here: the columns the query returns and what each must be, what its
thresholds are, its calendar, and what incremental runs may take for granted. Rule
loading (rules.py), rendering (sqlgen.render), the contract check (runtime.contract) and
the CLI's progress display read it. A new kind is one macro file, one entry here and one
case file (tests/kinds/rules/<kind>.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

# The name of a kind (Rule.kind): one of the entries below.
KindName = Literal["count", "sum", "streak", "gauge", "growth", "award"]

# What a column of a rule's query must be (runtime.contract names the database types):
# the configured user id type, a time, a number, text, JSON, or anything (stored as text).
ColumnType = Literal["user_id", "time", "number", "text", "json", "any"]
# What a level's threshold is: a whole number (the kind counts rows or periods), any
# positive number, or none (the query picks the level).
Threshold = Literal["integer", "decimal", "none"]
# How a progress value reads: a plain number, a percentage, or a number of periods.
ProgressUnit = Literal["", "%", "periods"]

# What every column a kind may read must be, whichever kind reads it.
COLUMN_TYPES: Mapping[str, ColumnType] = MappingProxyType(
    {
        "user_id": "user_id",
        "occurred_at": "time",
        "achieved_at": "time",
        "amount": "number",
        "value": "number",
        "level": "text",
        "meta": "json",
        "scope": "any",
    }
)


@dataclass(frozen=True)
class Kind:
    name: str
    # the columns the query must return, and the optional ones the kind understands
    required: tuple[str, ...]
    optional: tuple[str, ...]
    threshold: Threshold
    # the calendar period when the rule names none; None: the kind has no calendar
    default_period: str | None
    # Incremental runs may leave out a user who holds every level (since before the batch):
    # an event can then add no grant nor an earlier date. Only kinds whose grants an event
    # adds at or after its own time.
    skips_done: bool
    # A done user's progress is carried forward from user_progress.through_at (the macro's
    # `carry`) instead of read again; a skipping kind with progress must carry it.
    carries_progress: bool
    # Not only done users: every batch user whose progress row still counts the source up
    # to a time before the batch (and who holds the levels below its next one) is carried
    # forward from it, the levels crossed since found among the rows after `through_at`
    # (count, sum: a value that only adds up). Such a user is read from their new rows only.
    anchors_progress: bool
    # The kind writes progress rows (so incremental runs clear the stale ones).
    has_progress: bool
    progress_unit: ProgressUnit

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    @property
    def with_article(self) -> str:
        """"a count", "an award": for messages."""
        return ("an " if self.name[0] in "aeiou" else "a ") + self.name

    @property
    def macro(self) -> str:
        """The macro's template, under sql/ (the macro inside is named after the kind)."""
        return f"kinds/{self.name}.sql"


_ALL = (
    # the number of rows per (user, scope)
    Kind(
        "count",
        required=("user_id", "occurred_at"),
        optional=("scope",),
        threshold="integer",
        default_period=None,
        skips_done=True,
        carries_progress=True,
        anchors_progress=True,
        has_progress=True,
        progress_unit="",
    ),
    # the running sum of amount
    Kind(
        "sum",
        required=("user_id", "occurred_at", "amount"),
        optional=("scope",),
        threshold="decimal",
        default_period=None,
        skips_done=True,
        carries_progress=True,
        anchors_progress=True,
        has_progress=True,
        progress_unit="",
    ),
    # consecutive active periods; its progress (the current run) goes on after the last
    # level, so a done user is read again
    Kind(
        "streak",
        required=("user_id", "occurred_at"),
        optional=("scope",),
        threshold="integer",
        default_period="day",
        skips_done=False,
        carries_progress=False,
        anchors_progress=False,
        has_progress=True,
        progress_unit="periods",
    ),
    # a metric computed elsewhere, reaching a value
    Kind(
        "gauge",
        required=("user_id", "value", "achieved_at"),
        optional=("scope",),
        threshold="decimal",
        default_period=None,
        skips_done=True,
        carries_progress=True,
        anchors_progress=False,
        has_progress=True,
        progress_unit="",
    ),
    # growth between periods, in percent; a period's growth is dated at the period, before
    # the event that completes it, so a done user is read again
    Kind(
        "growth",
        required=("user_id", "occurred_at"),
        optional=("amount", "scope"),
        threshold="decimal",
        default_period="month",
        skips_done=False,
        carries_progress=False,
        anchors_progress=False,
        has_progress=True,
        progress_unit="%",
    ),
    # each row is a grant; no progress, so a done user is simply left out
    Kind(
        "award",
        required=("user_id", "achieved_at"),
        optional=("level", "scope", "meta"),
        threshold="none",
        default_period=None,
        skips_done=True,
        carries_progress=False,
        anchors_progress=False,
        has_progress=False,
        progress_unit="",
    ),
)

# by name, in the order messages list them
KINDS: Mapping[str, Kind] = MappingProxyType({kind.name: kind for kind in _ALL})


def kind(name: str) -> Kind:
    """The registry entry of a known kind (rules.py rejects the others when loading)."""
    return KINDS[name]
