"""A live progress line for long commands, for humans at a terminal only.

``ProgressLine`` redraws one line on a terminal (rate, done/total, ETA) at most a
few times a second and clears it when closed; on anything else (a pipe, a log
file, CI) it writes nothing, so scripts see only the command's own output.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

REDRAW_S = 0.25


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(label: str, done: int, total: int | None, elapsed_s: float, unit: str = "") -> str:
    """``label  done/total (pct)  rate/s  ETA m:ss`` (without total: done and rate)."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    unit = f" {unit}" if unit else ""
    if total:
        share = min(done / total, 1.0)
        eta = (total - done) / rate if rate > 0 else None
        left = f"ETA {_duration(eta)}" if eta is not None else "ETA --:--"
        return f"{label}  {done:,}/{total:,}{unit} ({share:.0%})  {rate:,.0f}/s  {left}"
    return f"{label}  {done:,}{unit}  {rate:,.0f}/s  {_duration(elapsed_s)}"


class ProgressLine:
    """``update(done)`` as work goes; a context manager that clears the line at the end."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        out: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self._out = out if out is not None else sys.stderr
        tty = bool(getattr(self._out, "isatty", lambda: False)())
        self.enabled = tty if enabled is None else enabled
        self._started = time.monotonic()
        self._drawn = 0.0
        self._width = 0

    def update(self, done: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < REDRAW_S:
            return
        self._drawn = now
        line = render(self.label, done, self.total, now - self._started, self.unit)
        pad = max(0, self._width - len(line))
        self._out.write("\r" + line + " " * pad)
        self._out.flush()
        self._width = len(line)

    def close(self) -> None:
        if self.enabled and self._width:
            self._out.write("\r" + " " * self._width + "\r")
            self._out.flush()
            self._width = 0

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
