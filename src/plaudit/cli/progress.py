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

    def done(self, outcome: str) -> None:
        self._finish()
        line = f"  {self.label} {outcome}  {self.elapsed:.1f}s"
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
