"""Progress of a long replay (Spark's StatusTracker, polled) and its closing summary."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from pyspark.sql import SparkSession

from replay.manifest import Manifest

POLL_S = 1.0


class Progress:
    """While open, prints the active stages' task progress on ``out`` about once a second.

    On a terminal it redraws one line; elsewhere (logs, Airflow) it prints a line
    only when a stage starts or finishes, or at most every ten seconds.
    """

    def __init__(
        self,
        spark: SparkSession,
        *,
        enabled: bool = True,
        out: TextIO | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self._spark = spark
        self._enabled = enabled
        self._out = out or sys.stderr
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tty = bool(getattr(self._out, "isatty", lambda: False)())
        self._last_line = ""
        self._last_print = 0.0

    def __enter__(self) -> Progress:
        if self._enabled:
            self._thread = threading.Thread(target=self._loop, name="replay-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tty and self._last_line:
            self._out.write("\r" + " " * len(self._last_line) + "\r")
            self._out.flush()

    def _loop(self) -> None:
        tracker = self._spark.sparkContext.statusTracker()
        while not self._stop.wait(self._poll_s):
            try:
                line = render(_stages(tracker))
            except Exception:  # a display must never break the job
                return
            self._show(line)

    def _show(self, line: str) -> None:
        if not line:
            return
        now = time.monotonic()
        if self._tty:
            pad = max(0, len(self._last_line) - len(line))
            self._out.write("\r" + line + " " * pad)
            self._out.flush()
        elif (
            line.split(":", 1)[0] != self._last_line.split(":", 1)[0]
            or now - self._last_print >= 10
        ):
            self._out.write(line + "\n")
            self._out.flush()
            self._last_print = now
        self._last_line = line


def _stages(tracker: Any) -> list[tuple[int, str, int, int, int]]:
    out = []
    for sid in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(sid)
        if info is None:
            continue
        out.append(
            (
                sid,
                str(info.name),
                int(info.numTasks),
                int(info.numCompletedTasks),
                int(info.numActiveTasks),
            )
        )
    return out


def render(stages: list[tuple[int, str, int, int, int]], width: int = 30) -> str:
    """``replay stage 3 (parquet at job.py:120) [#####-----] 12/40 tasks, 2 running``."""
    if not stages:
        return ""
    parts = []
    for sid, name, total, done, active in stages:
        filled = int(width * done / total) if total else 0
        bar = "#" * filled + "-" * (width - filled)
        where = name.split(" at ")[0] if name else "stage"
        parts.append(f"stage {sid} ({where}) [{bar}] {done}/{total} tasks, {active} running")
    return "replay " + "; ".join(parts)


def summary_text(manifest: Manifest) -> str:
    """The closing summary of a replay, for people."""
    s = manifest.summary
    c = manifest.counts
    r = manifest.range
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in s.stage_seconds.items())
    return (
        f"replayed [{r.start}, {r.end}) in {s.seconds:.1f} s\n"
        f"  records   {s.records:>12,}   (read {c.read:,}: {c.before_range:,} before, "
        f"{c.after_range:,} after the range)\n"
        f"  callers   {s.callers:>12,}\n"
        f"  towers    {s.towers:>12,}\n"
        f"  revenue   {s.revenue:>12,.2f} {manifest.currency}\n"
        f"  schema ids {', '.join(manifest.schema_ids) or '-'}\n"
        f"  stages    {stages or '-'}\n"
        f"  output    {manifest.path}"
    )
