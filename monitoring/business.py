"""Business gauges of the last closed window, fed by the aggregation job.

The aggregation job calls :func:`record_closed_window` once per micro-batch with the
window rows that batch emitted (append mode emits each window once, when the watermark
passes its end), e.g. from ``foreachBatch``::

    record_closed_window(billing_df.collect(), [])     # the billing query
    record_closed_window([], network_df.collect())     # the network-health query

Rows are anything indexable by column name (pyspark ``Row``, dicts, pandas records) with
the columns of the ``BillingWindow`` and ``TowerWindow`` schemas. ``window_end`` may be a
``datetime`` (naive ones are local time, as pyspark's ``collect()`` returns them), a pandas
``Timestamp``, or epoch milliseconds. A batch holding several windows publishes the newest
and counts them all; an empty batch changes nothing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from monitoring import metrics
from monitoring.last_window import BillingSnapshot, LastClosedWindow, NetworkSnapshot

#: A tower is "low-signal" in a window when at least this share of its events had low
#: signal. The generator's weak-coverage towers sit near 0.4, healthy ones near 0.15.
LOW_SIGNAL_TOWER_SHARE = 0.3

CALL_TYPE_COLUMNS = (("VOICE", "voice_count"), ("SMS", "sms_count"), ("DATA", "data_count"))


def record_closed_window(
    billing_rows: Iterable[Any],
    tower_rows: Iterable[Any],
    *,
    low_signal_share: float = LOW_SIGNAL_TOWER_SHARE,
    now: float | None = None,
    into: LastClosedWindow | None = None,
) -> None:
    """Publish the newest closed window found in ``billing_rows`` and ``tower_rows``."""
    target = metrics.BUSINESS_LAST_WINDOW if into is None else into
    emitted_at = time.time() if now is None else now
    billing = _by_window(billing_rows)
    if billing:
        end = max(billing)
        target.set_billing(billing_snapshot(billing[end], end, emitted_at), windows=len(billing))
    towers = _by_window(tower_rows)
    if towers:
        end = max(towers)
        snap = network_snapshot(towers[end], end, emitted_at, low_signal_share)
        target.set_network(snap, windows=len(towers))


def billing_snapshot(
    rows: Sequence[Any], window_end_s: float, emitted_at_s: float
) -> BillingSnapshot:
    """Billing figures over all callers of one window's rows."""
    return BillingSnapshot(
        window_end_s=window_end_s,
        emitted_at_s=emitted_at_s,
        revenue=round(sum(float(r["revenue"]) for r in rows), 4),
        active_callers=len({r["caller_num"] for r in rows}),
        billable_minutes=sum(int(r["billable_minutes"]) for r in rows),
    )


def network_snapshot(
    rows: Sequence[Any],
    window_end_s: float,
    emitted_at_s: float,
    low_signal_share: float = LOW_SIGNAL_TOWER_SHARE,
) -> NetworkSnapshot:
    """Network-health figures over all towers of one window's rows."""
    events = sum(int(r["events"]) for r in rows)
    weighted = events or 1
    return NetworkSnapshot(
        window_end_s=window_end_s,
        emitted_at_s=emitted_at_s,
        towers=len({r["tower_id"] for r in rows}),
        low_signal_towers=len(
            {r["tower_id"] for r in rows if float(r["low_signal_share"]) >= low_signal_share}
        ),
        low_signal_ratio=sum(float(r["low_signal_share"]) * int(r["events"]) for r in rows)
        / weighted,
        average_signal_bars=sum(float(r["avg_signal"]) * int(r["events"]) for r in rows) / weighted,
        events_by_type={name: sum(int(r[col]) for r in rows) for name, col in CALL_TYPE_COLUMNS},
    )


def _by_window(rows: Iterable[Any]) -> dict[float, list[Any]]:
    grouped: dict[float, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[epoch_seconds(row["window_end"])].append(row)
    return dict(grouped)


def epoch_seconds(value: Any) -> float:
    """Seconds since the epoch of a window bound (datetime, pandas Timestamp or epoch ms)."""
    if isinstance(value, datetime) or hasattr(value, "timestamp"):
        return float(value.timestamp())
    if isinstance(value, int | float):
        return float(value) / 1000.0
    msg = f"window_end must be a datetime or epoch milliseconds, got {value!r}"
    raise TypeError(msg)
