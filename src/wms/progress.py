"""Progress on long work, fit for a terminal and for a log file.

On a terminal, :func:`progress_bar` is a tqdm bar on stderr. When stderr goes to a file or
a pipe, it writes a plain line now and then instead (no carriage returns, no bar
redraws): at most every ``every_seconds`` and at each tenth of the work, plus one at the
end, each with the count, the rate and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class PlainProgress:
    """tqdm's small API (``update``, ``set_postfix_str``, ``close``) as occasional lines."""

    def __init__(
        self,
        *,
        total: float,
        desc: str,
        unit: str,
        initial: float = 0,
        file=None,
        every_seconds: float = 30.0,
    ):
        self.total, self.desc, self.unit = float(total), desc, unit
        self.file = file if file is not None else sys.stderr
        self.every, self.n, self.postfix = every_seconds, float(initial), ""
        self._initial = float(initial)
        self._start = self._last = time.monotonic()
        self._tenth = int(10 * self.n / self.total) if self.total else 0
        self._closed = False

    def _fmt(self, x: float) -> str:
        return f"{x:.0f}" if self.unit != "s" else f"{x:.1f}"

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.n) / rate if rate > 0 and self.total else 0.0
        parts = [
            f"{self.desc}: {self._fmt(self.n)}/{self._fmt(self.total)} {self.unit}",
            f"{rate:.1f} {self.unit}/s" if rate else "",
            f"{_clock(elapsed)} elapsed, {_clock(left)} left",
            self.postfix,
        ]
        return ", ".join(p for p in parts if p)

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        tenth = int(10 * self.n / self.total) if self.total else 0
        if tenth > self._tenth or now - self._last >= self.every:
            self._tenth, self._last = tenth, now
            if self.n < self.total:
                print(self.line(), file=self.file, flush=True)

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        self.postfix = s

    def close(self) -> None:
        if not self._closed and self.n > self._initial:
            print(self.line(), file=self.file, flush=True)
        self._closed = True


class _Off:
    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m:02d}:{s:02d}"


def progress_bar(
    *,
    total: float,
    desc: str,
    unit: str = "it",
    initial: float = 0,
    enabled: bool = True,
    **tqdm_kwargs: Any,
):
    """A progress display for ``total`` units of work, ``initial`` of them already done: a
    tqdm bar on a terminal, plain lines in a file (see the module doc), nothing when not
    ``enabled``. ``tqdm_kwargs`` (e.g. ``bar_format``) apply to the terminal bar only."""
    if not enabled:
        return _Off()
    if not sys.stderr.isatty():
        return PlainProgress(total=total, desc=desc, unit=unit, initial=initial)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr, **tqdm_kwargs)
