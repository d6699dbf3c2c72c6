"""The aggregate tables, each declared once: key, measures, columns, Avro schema, topic,
folders and business gauges. One DataFrame function computes them all.

``aggregate(cdrs, tables, params)`` is the whole computation::

    cdrs ─► explode: one row per (table, key) a CDR feeds (billing: its caller,
            network: its tower)
         ─► groupBy(window(event_time, <window>), table, key).agg(every table's measures)

The streaming job calls it on ``cdr.valid`` after ``withWatermark("event_time", ...)``,
so Spark's stateful aggregation keeps the open windows in its state store and emits
each window once, in append mode, when the watermark passes its end. The replay calls
it on a bounded batch of the same rows. ``Table.rows`` then cuts one table out of the
result with the fields of its Avro record, in order. Parity compares through the same
definitions (``Table.columns``, ``Table.key``).

Adding a table: a ``Table`` here (appended to ``TABLES``), its record in
``schemas/avro/<name>.avsc`` with a ``SchemaName``, and, if its topic should be a
setting, a field in ``TopicSettings``. The stream, the replay, the parity check, the
Kafka topic and the Parquet folders follow from the definition.

Definitions (the tests recompute them independently in plain Python):

- billing per caller: ``calls`` (VOICE records), ``voice_seconds`` (their summed
  ``duration_sec``), ``billable_minutes`` (per VOICE call ``ceil(duration_sec / 60)``,
  summed), ``sms_count``, ``data_volume_kb`` (summed over all records), ``revenue =
  round(billable_minutes * voice_per_minute + sms_count * sms_each + data_volume_kb /
  1024.0 * data_per_mb, 4)`` (doubles, in that order, Spark's half-up ``round``);
- network health per tower: ``events``, ``voice_count``/``sms_count``/``data_count``,
  ``avg_signal = sum(signal_strength) / events``, ``low_signal_share =
  count(signal_strength <= threshold) / events``, ``distinct_callers`` (exact: a set of
  callers per window and tower in the state, bounded by the subscriber count).

Windows are half-open ``[start, end)``, aligned on the epoch (UTC wall-clock
boundaries such as 10:00, 10:05, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as sf
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from kappa.settings import AggregateSettings, TopicSettings
from schemas.contract import SchemaName
from streams.aggregate.transforms import DEFAULT_WINDOW, RateCard

TABLE_COLUMN = "table"
KEY_COLUMN = "key"
WINDOW_COLUMN = "window"


@dataclass(frozen=True, slots=True)
class Params:
    """What the measures read from settings: the rate card, the low-signal threshold
    and the window length."""

    rates: RateCard
    low_signal_threshold: int = 2
    window: str = DEFAULT_WINDOW

    @classmethod
    def from_settings(cls, settings: AggregateSettings) -> Params:
        return cls(RateCard.from_settings(settings), settings.low_signal_threshold, settings.window)


@dataclass(frozen=True, slots=True)
class Measure:
    """One aggregated column: ``agg`` (a Spark aggregate function) over ``of`` (a
    per-CDR expression)."""

    name: str
    agg: Callable[[Column], Column]
    of: Callable[[Params], Column]


@dataclass(frozen=True, slots=True)
class Gauge:
    """A business figure of one closed window: ``agg`` over the table's window rows."""

    name: str
    agg: Callable[[Params], Column]


@dataclass(frozen=True)
class Table:
    """One aggregate table, declared once."""

    name: str
    """Stable step name: the ``table`` value in the aggregation, labels, logs."""
    key: str
    """The CDR column the table is keyed by (with the window)."""
    measures: tuple[Measure, ...]
    output: Callable[[Params], dict[str, Column]]
    """The published value columns, from the measure columns (after window and key)."""
    columns: StructType
    """The published columns in order: the fields of ``schema``."""
    schema: SchemaName
    """The Avro record of the table's Kafka topic."""
    default_topic: str
    topic_setting: str | None
    """The ``TopicSettings`` field naming the topic, if it is a setting."""
    folder: str
    """Parquet folder of the stream's closed windows."""
    replay_folder: str
    """Parquet folder of the replay's windows."""
    gauges: tuple[Gauge, ...] = field(default=())

    def topic(self, topics: TopicSettings) -> str:
        if self.topic_setting is None:
            return self.default_topic
        return str(getattr(topics, self.topic_setting))

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.columns.fields)

    def measure_column(self, measure: str) -> str:
        return f"{self.name}__{measure}"

    def rows(self, aggregated: DataFrame, params: Params) -> DataFrame:
        """This table's rows of ``aggregate``'s output, as ``columns``."""
        mine = aggregated.where(sf.col(TABLE_COLUMN) == sf.lit(self.name)).select(
            sf.col(f"{WINDOW_COLUMN}.start").alias("window_start"),
            sf.col(f"{WINDOW_COLUMN}.end").alias("window_end"),
            sf.col(KEY_COLUMN).alias(self.key),
            *[sf.col(self.measure_column(m.name)).alias(m.name) for m in self.measures],
        )
        values = self.output(params)
        return mine.select(
            "window_start",
            "window_end",
            self.key,
            *[values[name].cast(f.dataType).alias(name) for name, f in self._value_fields()],
        )

    def compute(self, cdrs: DataFrame, params: Params) -> DataFrame:
        """This table alone over ``cdrs`` (batch or watermarked stream)."""
        return self.rows(aggregate(cdrs, (self,), params), params)

    def _value_fields(self) -> list[tuple[str, StructField]]:
        return [(f.name, f) for f in self.columns.fields[3:]]


def _count_if(cond: Column) -> Column:
    return sf.when(cond, sf.lit(1)).otherwise(sf.lit(0))


def _is(call_type: str) -> Column:
    return sf.col("call_type") == sf.lit(call_type)


def _window_columns(key: str) -> list[StructField]:
    return [
        StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()),
        StructField(key, StringType()),
    ]


def _billing_output(p: Params) -> dict[str, Column]:
    revenue = sf.round(
        sf.col("billable_minutes") * sf.lit(float(p.rates.voice_per_minute))
        + sf.col("sms_count") * sf.lit(float(p.rates.sms_each))
        + sf.col("data_volume_kb") / sf.lit(1024.0) * sf.lit(float(p.rates.data_per_mb)),
        4,
    )
    out = {c: sf.col(c) for c in BILLING_SUMS}
    return {**out, "revenue": revenue}


BILLING_SUMS = ("calls", "voice_seconds", "billable_minutes", "sms_count", "data_volume_kb")

BILLING = Table(
    name="billing",
    key="caller_num",
    measures=(
        Measure("calls", sf.sum, lambda p: _count_if(_is("VOICE"))),
        Measure(
            "voice_seconds",
            sf.sum,
            lambda p: sf.when(_is("VOICE"), sf.col("duration_sec")).otherwise(sf.lit(0)),
        ),
        Measure(
            "billable_minutes",
            sf.sum,
            lambda p: sf.when(_is("VOICE"), sf.expr("(duration_sec + 59) div 60")).otherwise(
                sf.lit(0)
            ),
        ),
        Measure("sms_count", sf.sum, lambda p: _count_if(_is("SMS"))),
        Measure("data_volume_kb", sf.sum, lambda p: sf.col("data_volume_kb")),
    ),
    output=_billing_output,
    columns=StructType(
        [
            *_window_columns("caller_num"),
            *[StructField(c, LongType()) for c in BILLING_SUMS],
            StructField("revenue", DoubleType()),
        ]
    ),
    schema=SchemaName.BILLING_WINDOW,
    default_topic="cdr.billing.5m",
    topic_setting="billing",
    folder="billing_realtime",
    replay_folder="billing_report",
    gauges=(
        Gauge("revenue", lambda p: sf.round(sf.sum("revenue"), 4)),
        Gauge("active_callers", lambda p: sf.count(sf.lit(1))),
        Gauge("billable_minutes", lambda p: sf.sum("billable_minutes")),
    ),
)


def _network_output(p: Params) -> dict[str, Column]:
    events = sf.col("events").cast("double")
    return {
        "events": sf.col("events"),
        "voice_count": sf.col("voice_count"),
        "sms_count": sf.col("sms_count"),
        "data_count": sf.col("data_count"),
        "avg_signal": sf.col("signal_sum").cast("double") / events,
        "low_signal_share": sf.col("low").cast("double") / events,
        "distinct_callers": sf.size(sf.col("callers")),
    }


LOW_SIGNAL_TOWER_SHARE = 0.3
"""A tower is "low-signal" in a window when at least this share of its events had low
signal. The generator's weak-coverage towers sit near 0.4, healthy ones near 0.15."""

NETWORK = Table(
    name="network",
    key="tower_id",
    measures=(
        Measure("events", sf.sum, lambda p: sf.lit(1)),
        Measure("voice_count", sf.sum, lambda p: _count_if(_is("VOICE"))),
        Measure("sms_count", sf.sum, lambda p: _count_if(_is("SMS"))),
        Measure("data_count", sf.sum, lambda p: _count_if(_is("DATA"))),
        Measure("signal_sum", sf.sum, lambda p: sf.col("signal_strength")),
        Measure(
            "low",
            sf.sum,
            lambda p: _count_if(sf.col("signal_strength") <= sf.lit(int(p.low_signal_threshold))),
        ),
        Measure("callers", sf.collect_set, lambda p: sf.col("caller_num")),
    ),
    output=_network_output,
    columns=StructType(
        [
            *_window_columns("tower_id"),
            *[
                StructField(c, LongType())
                for c in ("events", "voice_count", "sms_count", "data_count")
            ],
            StructField("avg_signal", DoubleType()),
            StructField("low_signal_share", DoubleType()),
            StructField("distinct_callers", LongType()),
        ]
    ),
    schema=SchemaName.TOWER_WINDOW,
    default_topic="cdr.network.5m",
    topic_setting="network",
    folder="network_realtime",
    replay_folder="network_health",
    gauges=(
        Gauge("towers", lambda p: sf.count(sf.lit(1))),
        Gauge(
            "low_signal_towers",
            lambda p: sf.count(sf.when(sf.col("low_signal_share") >= LOW_SIGNAL_TOWER_SHARE, 1)),
        ),
        Gauge("events", lambda p: sf.sum("events")),
        Gauge("low_events", lambda p: sf.sum(sf.col("low_signal_share") * sf.col("events"))),
        Gauge("signal_sum", lambda p: sf.sum(sf.col("avg_signal") * sf.col("events"))),
        Gauge("voice_count", lambda p: sf.sum("voice_count")),
        Gauge("sms_count", lambda p: sf.sum("sms_count")),
        Gauge("data_count", lambda p: sf.sum("data_count")),
    ),
)

TABLES: tuple[Table, ...] = (BILLING, NETWORK)
"""Every aggregate table, in the order outputs are written."""

CDR_INPUTS = ("caller_num", "call_type", "duration_sec", "signal_strength", "data_volume_kb")
"""The CDR columns the measures read, besides the keys and ``event_time``."""


def by_name(name: str) -> Table:
    for table in TABLES:
        if table.name == name:
            return table
    msg = f"no aggregate table named {name!r} (known: {', '.join(t.name for t in TABLES)})"
    raise KeyError(msg)


def keyed(cdrs: Column | None, tables: Sequence[Table]) -> Column:
    """For ``explode``: one struct per table a CDR feeds (``table``, ``key`` and the
    columns the measures read, ``event_time`` last). A null ``cdrs`` condition
    (e.g. an undecodable value) yields no row."""
    structs = [
        sf.struct(
            sf.lit(t.name).alias(TABLE_COLUMN),
            sf.col(t.key).cast("string").alias(KEY_COLUMN),
            *[sf.col(c) for c in CDR_INPUTS],
            sf.col("event_time"),
        )
        for t in tables
    ]
    array = sf.array(*structs)
    return array if cdrs is None else sf.when(cdrs, array)


def aggregate_exploded(rows: DataFrame, tables: Sequence[Table], params: Params) -> DataFrame:
    """The windowed aggregation over rows already exploded by ``keyed``: one row per
    (window, table, key) with every table's measures (``<table>__<measure>``, set on
    that table's rows only)."""
    aggs: list[Column] = []
    for t in tables:
        mine = sf.col(TABLE_COLUMN) == sf.lit(t.name)
        for m in t.measures:
            value = m.of(params) if len(tables) == 1 else sf.when(mine, m.of(params))
            aggs.append(m.agg(value).alias(t.measure_column(m.name)))
    return rows.groupBy(
        sf.window(sf.col("event_time"), params.window).alias(WINDOW_COLUMN),
        sf.col(TABLE_COLUMN),
        sf.col(KEY_COLUMN),
    ).agg(*aggs)


def aggregate(cdrs: DataFrame, tables: Sequence[Table], params: Params) -> DataFrame:
    """Every table of ``tables`` over ``cdrs`` (the ``Cdr`` columns) in one aggregation."""
    exploded = cdrs.select(sf.explode(keyed(None, tables)).alias("k")).select("k.*")
    return aggregate_exploded(exploded, tables, params)


def gauge_frame(rows: DataFrame, table: Table, params: Params) -> DataFrame:
    """Per closed window of ``rows`` (one table's window rows): ``table``,
    ``window_end_ms``, the number of rows and the table's gauges (a JSON object)."""
    return rows.groupBy(sf.unix_millis("window_end").alias("window_end_ms")).agg(
        sf.lit(table.name).alias("table"),
        sf.count(sf.lit(1)).alias("rows"),
        sf.to_json(sf.struct(*[g.agg(params).alias(g.name) for g in table.gauges])).alias("gauges"),
    )


def window_stats(
    aggregated: DataFrame, tables: Sequence[Table], params: Params
) -> dict[str, list[dict[str, Any]]]:
    """For each table, one small dict per closed window of ``aggregate``'s output:
    ``window_end_ms``, ``rows`` and the gauges. One Spark job, a handful of rows
    whatever the number of callers or towers."""
    frames = [gauge_frame(t.rows(aggregated, params), t, params) for t in tables]
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    out: dict[str, list[dict[str, Any]]] = {t.name: [] for t in tables}
    for row in union.collect():
        out[str(row["table"])].append(
            {
                "window_end_ms": int(row["window_end_ms"]),
                "rows": int(row["rows"]),
                **json.loads(row["gauges"]),
            }
        )
    return out
