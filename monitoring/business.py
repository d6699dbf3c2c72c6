"""Business gauges of the last closed window, fed by the aggregation job.

For each table, the job computes its gauges (``streams.aggregate.tables.Table.gauges``)
in Spark over the window rows a micro-batch emitted, one small row per closed window
(never one per caller or tower), and calls :func:`publish_gauges` with them. Append
mode emits each window once, when the watermark passes its end; a batch holding
several windows publishes the newest and counts them all; an empty batch changes
nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitoring import metrics
from monitoring.last_window import BillingSnapshot, LastClosedWindow, NetworkSnapshot

CALL_TYPE_COLUMNS = (("VOICE", "voice_count"), ("SMS", "sms_count"), ("DATA", "data_count"))


def publish_gauges(
    table: str,
    rows: Sequence[Any],
    *,
    now: float | None = None,
    into: LastClosedWindow | None = None,
) -> None:
    """Publish the newest of ``rows`` (per closed window: ``window_end_ms`` and the
    table's gauges) for ``table`` (``billing`` or ``network``)."""
    if not rows:
        return
    target = metrics.BUSINESS_LAST_WINDOW if into is None else into
    emitted_at = time.time() if now is None else now
    newest = max(rows, key=lambda r: int(r["window_end_ms"]))
    end_s = int(newest["window_end_ms"]) / 1000.0
    if table == "billing":
        target.set_billing(
            BillingSnapshot(
                window_end_s=end_s,
                emitted_at_s=emitted_at,
                revenue=round(float(newest["revenue"] or 0.0), 4),
                active_callers=int(newest["active_callers"] or 0),
                billable_minutes=int(newest["billable_minutes"] or 0),
            ),
            windows=len(rows),
        )
    elif table == "network":
        events = int(newest["events"] or 0)
        weighted = events or 1
        target.set_network(
            NetworkSnapshot(
                window_end_s=end_s,
                emitted_at_s=emitted_at,
                towers=int(newest["towers"] or 0),
                low_signal_towers=int(newest["low_signal_towers"] or 0),
                low_signal_ratio=float(newest["low_events"] or 0.0) / weighted,
                average_signal_bars=float(newest["signal_sum"] or 0.0) / weighted,
                events_by_type={name: int(newest[col] or 0) for name, col in CALL_TYPE_COLUMNS},
            ),
            windows=len(rows),
        )


def epoch_seconds(value: Any) -> float:
    """Seconds since the epoch of a window bound (datetime, pandas Timestamp or epoch ms)."""
    if isinstance(value, datetime) or hasattr(value, "timestamp"):
        return float(value.timestamp())
    if isinstance(value, int | float):
        return float(value) / 1000.0
    msg = f"window_end must be a datetime or epoch milliseconds, got {value!r}"
    raise TypeError(msg)
