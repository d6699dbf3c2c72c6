"""Independent expectations for the aggregation tests: plain Python, no Spark.

Windows are computed from epoch milliseconds; revenue is rounded half-up on the
decimal representation, as Spark's ``round`` does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

WINDOW_MS = 5 * 60_000
RATES = {"VOICE": 2.0, "SMS": 1.0, "DATA": 0.5}  # AggregateSettings defaults
LOW_SIGNAL = 2


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def window_start(t: datetime) -> int:
    m = ms(t)
    return m - m % WINDOW_MS


def round4(x: float) -> float:
    return float(Decimal(repr(x)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def billing(cdrs: Iterable[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    acc: dict[tuple[int, str], dict[str, Any]] = defaultdict(
        lambda: dict(calls=0, voice_seconds=0, billable_minutes=0, sms_count=0, data_volume_kb=0)
    )
    for c in cdrs:
        row = acc[(window_start(c["event_time"]), c["caller_num"])]
        if c["call_type"] == "VOICE":
            row["calls"] += 1
            row["voice_seconds"] += c["duration_sec"]
            row["billable_minutes"] += -(-c["duration_sec"] // 60)
        if c["call_type"] == "SMS":
            row["sms_count"] += 1
        row["data_volume_kb"] += c["data_volume_kb"]
    for row in acc.values():
        row["revenue"] = round4(
            row["billable_minutes"] * RATES["VOICE"]
            + row["sms_count"] * RATES["SMS"]
            + row["data_volume_kb"] / 1024.0 * RATES["DATA"]
        )
    return dict(acc)


def network(cdrs: Iterable[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for c in cdrs:
        groups[(window_start(c["event_time"]), c["tower_id"])].append(c)
    out = {}
    for key, rows in groups.items():
        n = len(rows)
        out[key] = dict(
            events=n,
            voice_count=sum(r["call_type"] == "VOICE" for r in rows),
            sms_count=sum(r["call_type"] == "SMS" for r in rows),
            data_count=sum(r["call_type"] == "DATA" for r in rows),
            avg_signal=sum(r["signal_strength"] for r in rows) / n,
            low_signal_share=sum(r["signal_strength"] <= LOW_SIGNAL for r in rows) / n,
            distinct_callers=len({r["caller_num"] for r in rows}),
        )
    return out


def closed(table: dict[tuple[int, str], Any], watermark_ms: int) -> dict[tuple[int, str], Any]:
    """Only the windows the watermark has closed (append mode emits nothing else)."""
    return {k: v for k, v in table.items() if k[0] + WINDOW_MS <= watermark_ms}


def frame_to_table(df: Any, key: str) -> dict[tuple[int, str], dict[str, Any]]:
    """A pandas frame of billing/network rows -> {(window_start_ms, key): values}."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for rec in df.to_dict("records"):
        start = rec.pop("window_start")
        end = rec.pop("window_end")
        start_ms = int(start.timestamp() * 1000)
        assert int(end.timestamp() * 1000) - start_ms == WINDOW_MS
        k = (start_ms, rec.pop(key))
        assert k not in out, f"window row {k} written twice"
        out[k] = {
            n: (
                int(v)
                if isinstance(v, int | float)
                and n not in ("revenue", "avg_signal", "low_signal_share")
                else float(v)
            )
            for n, v in rec.items()
        }
    return out


def utc(ms_: int) -> datetime:
    return datetime.fromtimestamp(ms_ / 1000, UTC)
