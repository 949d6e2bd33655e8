"""A progress line per unit of long work, on stderr.

A rule run is one SQL statement, so its fraction done is unknowable; the line shows that the
rule is running and for how long, then its outcome. On a terminal it animates; in a log it
prints only the outcome.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TextIO

import click

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class ProgressLine:
    def __init__(self, label: str, stream: TextIO | None = None, width: int = 24):
        self.label = label.ljust(width)
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._said = False  # the outcome printed (done)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> ProgressLine:
        if self.stream.isatty():
            self._thread = threading.Thread(target=self._animate, daemon=True)
            self._thread.start()
        return self

    def _animate(self) -> None:
        for frame in itertools.cycle(_FRAMES):
            if self._stop.wait(0.1):
                return
            self.stream.write(f"\r  {self.label} {frame} {self.elapsed:5.1f}s")
            self.stream.flush()

    def done(self, outcome: str, seconds: float | None = None) -> None:
        """The outcome, and how long it took (`seconds`, else since the line began)."""
        self._finish()
        self._said = True
        took = self.elapsed if seconds is None else seconds
        line = f"  {self.label} {outcome}  {took:.1f}s"
        if self.stream.isatty():
            self.stream.write("\r\033[K")
        click.echo(line, file=self.stream)

    def _finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish()
        if not self._said and self.stream.isatty():  # no outcome: no spinner left behind
            self.stream.write("\r\033[K")


class InOrder:
    """Progress lines for units of work done several at once (`backfill --jobs`), printed in
    a fixed order all the same: a unit finished early waits for the ones before it, and the
    first unfinished one is the line that animates. Thread-safe."""

    def __init__(self, labels: Sequence[str], stream: TextIO | None = None):
        self.labels = list(labels)
        self.stream = stream
        self.next = 0
        self.outcomes: dict[str, tuple[str, float]] = {}
        self.lock = threading.Lock()
        self.line = self._open()

    def _open(self) -> ProgressLine | None:
        if self.next >= len(self.labels):
            return None
        return ProgressLine(self.labels[self.next], self.stream).__enter__()

    def done(self, label: str, outcome: str, seconds: float) -> None:
        with self.lock:
            self.outcomes[label] = (outcome, seconds)
            while self.line is not None and self.labels[self.next] in self.outcomes:
                self.line.done(*self.outcomes.pop(self.labels[self.next]))
                self.next += 1
                self.line = self._open()

    def close(self) -> None:
        with self.lock:
            if self.line is not None:
                self.line.__exit__(None, None, None)
                self.line = None
