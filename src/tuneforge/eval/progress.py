"""Progress of one eval task: a bar with ETA on a terminal, plain unwrapped lines otherwise (for log files)."""

from __future__ import annotations

import sys
import time
from typing import Callable

Log = Callable[[str], None]

LINE_EVERY_S = 30.0  # plain-line mode: at most one line per this many seconds (plus the last one)


def _eta(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class TaskProgress:
    """Call with the number of samples done; `close()` when the task ends.

    mode: auto (bar when stderr is a terminal, else lines), bar, lines, off."""

    def __init__(self, name: str, total: int, mode: str = "auto", log: Log | None = None):
        self.name, self.total, self.log = name, total, log or (lambda m: print(m, file=sys.stderr, flush=True))
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.t0 = time.perf_counter()
        self._last_line = self.t0
        self._bar = None
        if mode == "bar" and total:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(name, total=total, rate="")

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        rate = done / (now - self.t0) if now > self.t0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, completed=done, rate=f"{rate:.2f} samples/s")
        elif self.mode == "lines" and done < self.total and now - self._last_line >= LINE_EVERY_S:
            self._last_line = now
            eta = _eta((self.total - done) / rate) if rate else "?"
            self.log(f"{self.name}: {done}/{self.total} ({100 * done // max(self.total, 1)}%) "
                     f"{rate:.2f} samples/s, ETA {eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
