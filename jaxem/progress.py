"""A progress line per pass over a data source: rows read, rows per second, the objective.

On a terminal and in a notebook the line is redrawn as blocks are read (a carriage return, at
most every `REFRESH` seconds) and kept when the pass ends; where standard error is a file or a
pipe only the finished lines are written. ``quiet`` writes nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REFRESH = 0.25


def _live(stream: TextIO) -> bool:
    """Whether ``stream`` redraws a line on a carriage return: a terminal, or a notebook's
    output (IPython kernels handle it)."""
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """Progress of passes over ``total_rows`` rows (None: unknown), written to ``stream``
    (default: standard error); nothing with ``quiet``."""

    def __init__(self, total_rows: int | None = None, quiet: bool = False, stream=None):
        self.total_rows = total_rows
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.live = not quiet and _live(self.stream)
        self.label = ""
        self.width = 0
        self.seen = 0
        self.started = self.drawn = time.perf_counter()

    def start(self, label: str) -> None:
        """A pass begins (``label``: "iteration 3", "pass 1")."""
        self.label, self.seen = label, 0
        self.started = self.drawn = time.perf_counter()

    def rows(self, n: int) -> None:
        """``n`` more rows read."""
        self.seen += n
        now = time.perf_counter()
        if self.live and now - self.drawn >= REFRESH:
            self.drawn = now
            of = "" if self.total_rows is None else f" / {self.total_rows:,}"
            rate = self.seen / max(now - self.started, 1e-9)
            self._redraw(f"{self.label}: {self.seen:,}{of} rows, {rate:,.0f} rows/s")

    def done(self, objective: float, rows: int) -> None:
        """The pass ended at ``objective`` over ``rows`` rows."""
        seconds = time.perf_counter() - self.started
        per_row = f" ({objective / rows:.6g} per row)" if rows else ""
        line = (
            f"{self.label}: {rows:,} rows in {seconds:.2f} s ({rows / max(seconds, 1e-9):,.0f} "
            f"rows/s), objective {objective:.10g}{per_row}"
        )
        if self.live:
            self._redraw(line)
            self._write("\n")
            self.width = 0
        else:
            self._write(line + "\n")

    def finish(self, seconds: float) -> None:
        """All passes ended, after ``seconds``."""
        self._write(f"done in {seconds:.2f} s\n")

    def _redraw(self, line: str) -> None:
        """``line`` over the one drawn before (spaces clear what is longer)."""
        self._write("\r" + line.ljust(self.width))
        self.width = len(line)

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()
