"""What every aggregate table shares: the ``Cdr`` columns, the rate card, intervals and windows.

The tables themselves (billing per caller, health per tower) and the one function
that computes them are in ``streams.aggregate.tables``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as sf
from pyspark.sql.types import (
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from kappa.settings import AggregateSettings
from streams.exceptions import BadSettingError

DEFAULT_WINDOW = "5 minutes"

CDR_SCHEMA = StructType(
    [
        StructField("call_id", StringType(), False),
        StructField("caller_num", StringType(), False),
        StructField("callee_num", StringType(), False),
        StructField("call_type", StringType(), False),
        StructField("duration_sec", IntegerType(), False),
        StructField("event_time", TimestampType(), False),
        StructField("tower_id", StringType(), False),
        StructField("signal_strength", IntegerType(), False),
        StructField("data_volume_kb", LongType(), False),
    ]
)
"""The decoded ``Cdr`` columns both transforms read (``call_type`` as its enum symbol)."""


@dataclass(frozen=True, slots=True)
class RateCard:
    """Prices applied by ``billing``; ``currency`` names them (ISO 4217)."""

    voice_per_minute: float
    sms_each: float
    data_per_mb: float
    currency: str = "LKR"

    @classmethod
    def from_settings(cls, settings: AggregateSettings) -> RateCard:
        return cls(
            voice_per_minute=settings.rate_voice_per_minute,
            sms_each=settings.rate_sms_each,
            data_per_mb=settings.rate_data_per_mb,
            currency=settings.currency,
        )


_UNITS_MS = {
    "millisecond": 1,
    "second": 1000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
}
_PART = re.compile(r"(\d+)\s*([a-z]+?)s?\b")


def interval_ms(text: str) -> int:
    """``"10 minutes"`` -> 600000 (the forms ``withWatermark`` and ``window`` take)."""
    body = text.strip().lower().removeprefix("interval").strip()
    parts = _PART.findall(body)
    if not parts or _PART.sub("", body).strip():
        msg = f"bad interval {text!r}: expected e.g. '10 minutes' or '1 hour 30 minutes'"
        raise BadSettingError(msg)
    total = 0
    for number, unit in parts:
        if unit not in _UNITS_MS:
            msg = f"bad interval {text!r}: unknown unit {unit!r}"
            raise BadSettingError(msg)
        total += int(number) * _UNITS_MS[unit]
    return total


def window_bounds(event_time: Column, window: str = DEFAULT_WINDOW) -> tuple[Column, Column]:
    """(start, end) of the tumbling window of ``event_time``, as ``window_of`` has them,
    by plain arithmetic on microseconds. Unlike ``window`` this adds no
    ``event_time IS NOT NULL`` filter, which Spark pushes below the decoding and
    so decodes every record once more; a null time gives null bounds."""
    length_us = interval_ms(window) * 1000
    micros = sf.unix_micros(event_time)
    start = micros - sf.pmod(micros, sf.lit(length_us))
    return sf.timestamp_micros(start), sf.timestamp_micros(start + sf.lit(length_us))


def window_of(event_time: Column, window: str = DEFAULT_WINDOW) -> Column:
    """The tumbling window (a ``start``/``end`` struct) an event time falls in."""
    return sf.window(event_time, window)
