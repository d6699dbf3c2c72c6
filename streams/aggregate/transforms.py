"""Billing and network health over 5-minute event-time windows: plain functions over DataFrames.

The same functions serve the streaming job (``streams.aggregate.job``, where the
input carries a watermark) and the bounded replay (a batch DataFrame of decoded
``Cdr`` rows). They do no I/O and set no watermark: a streaming caller applies
``withWatermark("event_time", ...)`` to the input before calling them, so that
Spark's append mode can close windows; a batch caller just passes its rows.

Input: any DataFrame with (at least) the ``Cdr`` columns of ``CDR_SCHEMA``::

    call_id string, caller_num string, callee_num string, call_type string
    (VOICE | SMS | DATA), duration_sec int, event_time timestamp (UTC),
    tower_id string, signal_strength int, data_volume_kb long

Outputs have exactly the fields, names and order of the Avro records
``BillingWindow`` and ``TowerWindow`` (``schemas/avro/``), windows as
``window_start``/``window_end`` timestamps (half-open ``[start, end)``, aligned on
the epoch, so on UTC wall-clock boundaries such as 10:00, 10:05, ...).

Definitions (the tests recompute them independently in plain Python):

- ``calls``: VOICE records; ``voice_seconds``: their summed ``duration_sec``;
- ``billable_minutes``: per VOICE call ``ceil(duration_sec / 60)``, summed
  (a 0-second call bills 0 minutes, 61 s bill 2);
- ``sms_count``: SMS records; ``data_volume_kb``: summed over all records
  (non-zero for DATA only);
- ``revenue = round(billable_minutes * voice_per_minute + sms_count * sms_each
  + data_volume_kb / 1024.0 * data_per_mb, 4)``, in doubles, evaluated in that
  order, rounded half-up on the decimal representation (Spark's ``round``);
- ``events``: records; ``voice_count``/``sms_count``/``data_count`` by type;
- ``avg_signal = sum(signal_strength) / events`` (double);
- ``low_signal_share = count(signal_strength <= threshold) / events`` (double);
- ``distinct_callers``: exact number of distinct ``caller_num`` (a set per
  window and tower in the streaming state; bounded by the subscriber count).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as sf
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from kappa.settings import AggregateSettings
from streams.aggregate.exceptions import BadSettingError

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

BILLING_SCHEMA = StructType(
    [
        StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()),
        StructField("caller_num", StringType()),
        StructField("calls", LongType()),
        StructField("voice_seconds", LongType()),
        StructField("billable_minutes", LongType()),
        StructField("sms_count", LongType()),
        StructField("data_volume_kb", LongType()),
        StructField("revenue", DoubleType()),
    ]
)
"""What ``billing`` returns: the fields of the Avro ``BillingWindow``."""

NETWORK_SCHEMA = StructType(
    [
        StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()),
        StructField("tower_id", StringType()),
        StructField("events", LongType()),
        StructField("voice_count", LongType()),
        StructField("sms_count", LongType()),
        StructField("data_count", LongType()),
        StructField("avg_signal", DoubleType()),
        StructField("low_signal_share", DoubleType()),
        StructField("distinct_callers", LongType()),
    ]
)
"""What ``network_health`` returns: the fields of the Avro ``TowerWindow``."""


BILLING_STATE_COLUMNS = (
    "window_start",
    "window_end",
    "caller_num",
    "calls",
    "voice_seconds",
    "billable_minutes",
    "sms_count",
    "data_volume_kb",
)
"""What ``billing_partial`` returns: per caller and window, the sums before pricing."""

NETWORK_STATE_COLUMNS = (
    "window_start",
    "window_end",
    "tower_id",
    "events",
    "voice_count",
    "sms_count",
    "data_count",
    "signal_sum",
    "low",
    "callers",
)
"""What ``network_partial`` returns: per tower and window, sums and the set of callers."""


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


def _count_if(cond: Column) -> Column:
    return sf.sum(sf.when(cond, sf.lit(1)).otherwise(sf.lit(0))).cast("long")


def _billing_sums() -> dict[str, Column]:
    """Per caller and window, before pricing (``BILLING_STATE_COLUMNS[3:]``)."""
    voice = sf.col("call_type") == sf.lit("VOICE")
    per_call_minutes = sf.expr("(duration_sec + 59) div 60")
    return {
        "calls": _count_if(voice),
        "voice_seconds": sf.sum(sf.when(voice, sf.col("duration_sec")).otherwise(sf.lit(0))).cast(
            "long"
        ),
        "billable_minutes": sf.sum(sf.when(voice, per_call_minutes).otherwise(sf.lit(0))).cast(
            "long"
        ),
        "sms_count": _count_if(sf.col("call_type") == sf.lit("SMS")),
        "data_volume_kb": sf.sum(sf.col("data_volume_kb")).cast("long"),
    }


def _network_sums(low_signal_threshold: int) -> dict[str, Column]:
    """Per tower and window, without the caller set (``NETWORK_STATE_COLUMNS[3:-1]``)."""
    return {
        "events": sf.count(sf.lit(1)).cast("long"),
        "voice_count": _count_if(sf.col("call_type") == sf.lit("VOICE")),
        "sms_count": _count_if(sf.col("call_type") == sf.lit("SMS")),
        "data_count": _count_if(sf.col("call_type") == sf.lit("DATA")),
        "signal_sum": sf.sum(sf.col("signal_strength")).cast("long"),
        "low": _count_if(sf.col("signal_strength") <= sf.lit(int(low_signal_threshold))),
    }


def _windowed() -> list[Column]:
    return [sf.col("window.start").alias("window_start"), sf.col("window.end").alias("window_end")]


def billing_partial(cdrs: DataFrame, window: str = DEFAULT_WINDOW) -> DataFrame:
    """Billing sums per caller per window (``BILLING_STATE_COLUMNS``), before pricing.

    ``billing_final`` prices them; ``billing`` is the two in one.
    """
    agg = cdrs.groupBy(
        window_of(sf.col("event_time"), window).alias("window"), sf.col("caller_num")
    ).agg(*[c.alias(name) for name, c in _billing_sums().items()])
    return agg.select(*_windowed(), *BILLING_STATE_COLUMNS[2:])


BILLING_KIND = "billing"
NETWORK_KIND = "network"


def keys() -> Column:
    """For ``explode``: each CDR as a (``kind``, ``key``) pair per table it feeds."""
    return sf.array(
        sf.struct(sf.lit(BILLING_KIND).alias("kind"), sf.col("caller_num").alias("key")),
        sf.struct(sf.lit(NETWORK_KIND).alias("kind"), sf.col("tower_id").alias("key")),
    )


def keyed_partial(
    keyed: DataFrame, low_signal_threshold: int, window: str = DEFAULT_WINDOW
) -> DataFrame:
    """Billing and tower partials in one aggregation (one pass, one shuffle).

    ``keyed`` holds CDR columns plus ``kind`` and ``key`` (``explode(keys())``:
    every CDR twice, once keyed by caller, once by tower). Rows of another
    ``kind`` (with any columns null) are counted in ``events`` under their own
    kind. Output: ``window_start``, ``window_end``, ``kind``, ``key``, the sums of
    both tables, ``callers`` (set only for the network kind) and ``max_event_time``.
    ``billing_slice`` and ``network_slice`` cut it into ``billing_partial``'s and
    ``network_partial``'s columns.
    """
    sums = {**_billing_sums(), **_network_sums(low_signal_threshold)}
    start, end = window_bounds(sf.col("event_time"), window)
    agg = keyed.groupBy(
        start.alias("window_start"), end.alias("window_end"), sf.col("kind"), sf.col("key")
    ).agg(
        *[c.alias(name) for name, c in sums.items()],
        sf.collect_set(sf.when(sf.col("kind") == sf.lit(NETWORK_KIND), sf.col("caller_num"))).alias(
            "callers"
        ),
        sf.max("event_time").alias("max_event_time"),
    )
    return agg.select(
        "window_start", "window_end", "kind", "key", *KEYED_SUMS, "callers", "max_event_time"
    )


KEYED_SUMS = (
    "calls",
    "voice_seconds",
    "billable_minutes",
    "sms_count",
    "data_volume_kb",
    "events",
    "voice_count",
    "data_count",
    "signal_sum",
    "low",
)
"""The sums ``keyed_partial`` keeps per (window, kind, key), then ``callers``."""


def keyed_merge(partials: DataFrame) -> DataFrame:
    """Rows of ``keyed_partial`` (without ``max_event_time``) combined per window,
    kind and key: sums added, caller sets united. Partials of disjoint inputs merge
    into the partial of their union."""
    return partials.groupBy("window_start", "window_end", "kind", "key").agg(
        *[sf.sum(c).cast("long").alias(c) for c in KEYED_SUMS],
        sf.array_distinct(sf.flatten(sf.collect_list("callers"))).alias("callers"),
    )


def billing_slice(partial: DataFrame) -> DataFrame:
    """The billing rows of ``keyed_partial`` as ``BILLING_STATE_COLUMNS``."""
    return partial.where(sf.col("kind") == sf.lit(BILLING_KIND)).select(
        "window_start",
        "window_end",
        sf.col("key").alias("caller_num"),
        *BILLING_STATE_COLUMNS[3:],
    )


def network_slice(partial: DataFrame) -> DataFrame:
    """The tower rows of ``keyed_partial`` as ``NETWORK_STATE_COLUMNS``."""
    return partial.where(sf.col("kind") == sf.lit(NETWORK_KIND)).select(
        "window_start",
        "window_end",
        sf.col("key").alias("tower_id"),
        *NETWORK_STATE_COLUMNS[3:],
    )


def billing_final(partials: DataFrame, rates: RateCard) -> DataFrame:
    """Merged partials priced: the columns of ``BILLING_SCHEMA``."""
    revenue = sf.round(
        sf.col("billable_minutes") * sf.lit(float(rates.voice_per_minute))
        + sf.col("sms_count") * sf.lit(float(rates.sms_each))
        + sf.col("data_volume_kb") / sf.lit(1024.0) * sf.lit(float(rates.data_per_mb)),
        4,
    )
    return partials.select(
        *BILLING_STATE_COLUMNS,
        revenue.cast("double").alias("revenue"),
    )


def billing(cdrs: DataFrame, rates: RateCard, window: str = DEFAULT_WINDOW) -> DataFrame:
    """Billing per caller per tumbling window (columns of ``BILLING_SCHEMA``).

    Works on a batch or a streaming DataFrame; a streaming one must carry a
    watermark on ``event_time`` for append mode.
    """
    return billing_final(billing_partial(cdrs, window), rates)


def network_partial(
    cdrs: DataFrame, low_signal_threshold: int, window: str = DEFAULT_WINDOW
) -> DataFrame:
    """Tower sums per window (``NETWORK_STATE_COLUMNS``): counts, the signal sum, the
    low-signal count and the set of callers; ``network_final`` finishes them."""
    agg = cdrs.groupBy(
        window_of(sf.col("event_time"), window).alias("window"), sf.col("tower_id")
    ).agg(
        *[c.alias(name) for name, c in _network_sums(low_signal_threshold).items()],
        # Exact distinct count: a set per tower and window (bounded by the subscribers).
        sf.collect_set(sf.col("caller_num")).alias("callers"),
    )
    return agg.select(*_windowed(), *NETWORK_STATE_COLUMNS[2:])


def network_final(partials: DataFrame) -> DataFrame:
    """Merged partials as the columns of ``NETWORK_SCHEMA``."""
    events = sf.col("events").cast("double")
    return partials.select(
        "window_start",
        "window_end",
        "tower_id",
        "events",
        "voice_count",
        "sms_count",
        "data_count",
        (sf.col("signal_sum").cast("double") / events).alias("avg_signal"),
        (sf.col("low").cast("double") / events).alias("low_signal_share"),
        sf.size(sf.col("callers")).cast("long").alias("distinct_callers"),
    )


def network_health(
    cdrs: DataFrame, low_signal_threshold: int, window: str = DEFAULT_WINDOW
) -> DataFrame:
    """Health per tower per tumbling window (columns of ``NETWORK_SCHEMA``).

    Works on a batch or a streaming DataFrame; a streaming one must carry a
    watermark on ``event_time`` for append mode.
    """
    return network_final(network_partial(cdrs, low_signal_threshold, window))
