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


def window_of(event_time: Column, window: str = DEFAULT_WINDOW) -> Column:
    """The tumbling window (a ``start``/``end`` struct) an event time falls in."""
    return sf.window(event_time, window)


def _count_if(cond: Column) -> Column:
    return sf.sum(sf.when(cond, sf.lit(1)).otherwise(sf.lit(0))).cast("long")


def billing(cdrs: DataFrame, rates: RateCard, window: str = DEFAULT_WINDOW) -> DataFrame:
    """Billing per caller per tumbling window (columns of ``BILLING_SCHEMA``).

    Works on a batch or a streaming DataFrame; a streaming one must carry a
    watermark on ``event_time`` for append mode.
    """
    voice = sf.col("call_type") == sf.lit("VOICE")
    per_call_minutes = sf.expr("(duration_sec + 59) div 60")
    agg = cdrs.groupBy(
        window_of(sf.col("event_time"), window).alias("window"), sf.col("caller_num")
    ).agg(
        _count_if(voice).alias("calls"),
        sf.sum(sf.when(voice, sf.col("duration_sec")).otherwise(sf.lit(0)))
        .cast("long")
        .alias("voice_seconds"),
        sf.sum(sf.when(voice, per_call_minutes).otherwise(sf.lit(0)))
        .cast("long")
        .alias("billable_minutes"),
        _count_if(sf.col("call_type") == sf.lit("SMS")).alias("sms_count"),
        sf.sum(sf.col("data_volume_kb")).cast("long").alias("data_volume_kb"),
    )
    revenue = sf.round(
        sf.col("billable_minutes") * sf.lit(float(rates.voice_per_minute))
        + sf.col("sms_count") * sf.lit(float(rates.sms_each))
        + sf.col("data_volume_kb") / sf.lit(1024.0) * sf.lit(float(rates.data_per_mb)),
        4,
    )
    return agg.select(
        sf.col("window.start").alias("window_start"),
        sf.col("window.end").alias("window_end"),
        "caller_num",
        "calls",
        "voice_seconds",
        "billable_minutes",
        "sms_count",
        "data_volume_kb",
        revenue.cast("double").alias("revenue"),
    )


def network_health(
    cdrs: DataFrame, low_signal_threshold: int, window: str = DEFAULT_WINDOW
) -> DataFrame:
    """Health per tower per tumbling window (columns of ``NETWORK_SCHEMA``).

    Works on a batch or a streaming DataFrame; a streaming one must carry a
    watermark on ``event_time`` for append mode.
    """
    agg = cdrs.groupBy(
        window_of(sf.col("event_time"), window).alias("window"), sf.col("tower_id")
    ).agg(
        sf.count(sf.lit(1)).cast("long").alias("events"),
        _count_if(sf.col("call_type") == sf.lit("VOICE")).alias("voice_count"),
        _count_if(sf.col("call_type") == sf.lit("SMS")).alias("sms_count"),
        _count_if(sf.col("call_type") == sf.lit("DATA")).alias("data_count"),
        sf.sum(sf.col("signal_strength")).cast("long").alias("signal_sum"),
        _count_if(sf.col("signal_strength") <= sf.lit(int(low_signal_threshold))).alias("low"),
        # Exact distinct count: countDistinct is not allowed in streaming aggregations.
        sf.size(sf.collect_set(sf.col("caller_num"))).cast("long").alias("distinct_callers"),
    )
    return agg.select(
        sf.col("window.start").alias("window_start"),
        sf.col("window.end").alias("window_end"),
        "tower_id",
        "events",
        "voice_count",
        "sms_count",
        "data_count",
        (sf.col("signal_sum").cast("double") / sf.col("events").cast("double")).alias("avg_signal"),
        (sf.col("low").cast("double") / sf.col("events").cast("double")).alias("low_signal_share"),
        "distinct_callers",
    )
