"""``kappa parity``: streaming aggregates against a replay of the same range, closed windows only.

For each closed window in the range, every key (caller for billing, tower for
network health) is compared between:

* the stream: ``billing_realtime/`` and ``network_realtime/`` under the
  aggregation's output;
* the replay: the aggregation's transforms over the range's records read from
  ``cdr.valid`` (the same reading as ``kappa replay``, nothing written).

A difference is *explained* when the stream's row equals the transforms over
the replay's records minus the late records the aggregation captured for that
window (``late/`` under its output, else the ``cdr.late`` topic), plus the
range's records that arrived after the replay's lateness margin (past the
planned end offsets) yet reached the stream on time, as happens when the stream
reads a backlog in one batch (a rebuild from the topic). Any other difference,
including a key duplicated in the stream output, is *unexplained*.

Closed windows: those entirely inside ``[from, to)`` that end no later than
the latest window the stream has emitted (append mode emits a window once the
watermark has passed its end).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812
from pyspark.sql.types import DoubleType

from replay import runner
from replay.exceptions import ParityError
from replay.fs import HadoopFs, join, normalize
from replay.plan import ReplayPlan, iso, to_ms
from replay.read import decode, decoders_for, read_kafka, read_offsets
from replay.transform import in_range
from streams.aggregate import transforms
from streams.aggregate.paths import LATE_TABLE, Paths
from streams.aggregate.tables import TABLES, Params, Table

log = logging.getLogger(__name__)

LATE_DIR = LATE_TABLE
TOLERANCE = 1e-6


@dataclass
class Difference:
    table: str
    window_start: str
    key: str
    kind: str  # explained | unexplained
    reason: str
    late_records: int
    stream: dict[str, Any] | None
    replay: dict[str, Any] | None
    beyond_margin_records: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ParityReport:
    start: datetime
    end: datetime
    closed_until: datetime | None
    windows: int
    late_records: int
    rows: dict[str, int] = field(default_factory=dict)
    matching: dict[str, int] = field(default_factory=dict)
    explained: list[Difference] = field(default_factory=list)
    unexplained: list[Difference] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": iso(self.start),
            "to": iso(self.end),
            "closed_until": iso(self.closed_until) if self.closed_until else None,
            "windows_compared": self.windows,
            "late_records": self.late_records,
            "rows": self.rows,
            "matching": self.matching,
            "explained": [d.to_dict() for d in self.explained],
            "unexplained": [d.to_dict() for d in self.unexplained],
        }

    def text(self, show: int = 20) -> str:
        lines = [
            f"parity of [{iso(self.start)}, {iso(self.end)}): {self.windows} closed windows "
            f"(closed until {iso(self.closed_until) if self.closed_until else '-'}), "
            f"{self.late_records} late records captured by the stream",
        ]
        for t in TABLES:
            lines.append(
                f"  {t.name:<8} rows {self.rows.get(t.name, 0):>8}  equal "
                f"{self.matching.get(t.name, 0):>8}  explained "
                f"{sum(d.table == t.name for d in self.explained):>6}  unexplained "
                f"{sum(d.table == t.name for d in self.unexplained):>6}"
            )
        for kind, diffs in (("unexplained", self.unexplained), ("explained", self.explained)):
            for d in diffs[:show]:
                lines.append(f"  {kind}: {d.table} window {d.window_start} {d.key}: {d.reason}")
            if len(diffs) > show:
                lines.append(f"  ... {len(diffs) - show} more {kind}")
        lines.append(
            "no unexplained difference"
            if not self.unexplained
            else f"{len(self.unexplained)} unexplained differences"
        )
        return "\n".join(lines)


def aggregate_root(s: runner.Settings, aggregate_output: str | None) -> str:
    return normalize(Paths.resolve(s.aggregate, s.stack, aggregate_output).output)


def compare(
    spark: SparkSession,
    s: runner.Settings,
    start: datetime,
    end: datetime,
    *,
    aggregate_output: str | None = None,
    topic: str | None = None,
) -> ParityReport:
    the_plan = runner.plan_range(s, start, end, topic)
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    root = aggregate_root(s, aggregate_output)
    fs = HadoopFs(spark, root)
    stream = _stream_tables(spark, fs, root)
    closed_until = _closed_until(stream, root)
    in_windows = partial(
        _in_windows, lo=to_ms(the_plan.start), hi=min(to_ms(the_plan.end), to_ms(closed_until))
    )
    decoders = decoders_for(s.context(progress=False), the_plan.topic)
    rows = in_range(decode(read_offsets(spark, s.kafka, the_plan), decoders), the_plan).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    beyond: DataFrame | None = None
    try:
        late = in_windows(
            _late(spark, fs, root, s, topic), "missed_window_start", "missed_window_end"
        ).persist(StorageLevel.MEMORY_AND_DISK)
        late_ids = late.select("call_id").distinct()
        beyond = (
            in_range(decode(_read_after(spark, s, the_plan), decoders), the_plan)
            .join(late_ids, "call_id", "left_anti")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        kept = rows.join(late_ids, "call_id", "left_anti").unionByName(beyond)
        params = Params.from_settings(s.aggregate)
        replayed = {t.name: t.compute(rows, params) for t in TABLES}
        adjusted = {t.name: t.compute(kept, params) for t in TABLES}
        windows = _windows_compared(replayed, stream, in_windows)
        report = ParityReport(the_plan.start, the_plan.end, closed_until, windows, late.count())
        for t in TABLES:
            _compare_table(
                t,
                stream=in_windows(stream[t.name]),
                replayed=in_windows(replayed[t.name]),
                adjusted=in_windows(adjusted[t.name]),
                late_by_key=_late_by_key(late, t.key),
                beyond_by_key=_by_window_and_key(beyond, t.key, s.aggregate.window),
                report=report,
            )
    finally:
        rows.unpersist()
        if beyond is not None:
            beyond.unpersist()
    _report_done(report)
    return report


def _stream_tables(spark: SparkSession, fs: HadoopFs, root: str) -> dict[str, DataFrame]:
    """The streaming outputs, by table name (``ParityError`` when one is missing)."""
    for t in TABLES:
        if not fs.exists(join(root, t.folder)):
            msg = (
                f"no streaming output {join(root, t.folder)}; run `kappa aggregate` first "
                "or give --aggregate-output"
            )
            raise ParityError(msg)
    return {
        t.name: spark.read.parquet(join(root, t.folder)).select(*t.column_names) for t in TABLES
    }


def _closed_until(stream: dict[str, DataFrame], root: str) -> datetime:
    """The end of the latest window the stream has emitted (UTC)."""
    closed_row = (
        stream["billing"]
        .select("window_end")
        .union(stream["network"].select("window_end"))
        .agg(F.max("window_end").alias("m"))
        .first()
    )
    closed_until: datetime | None = closed_row["m"] if closed_row else None
    if closed_until is None:
        msg = f"the streaming output under {root} has no closed window yet"
        raise ParityError(msg)
    if closed_until.tzinfo is None:
        return closed_until.replace(tzinfo=UTC)
    return closed_until.astimezone(UTC)


def _in_windows(
    df: DataFrame,
    start_col: str = "window_start",
    end_col: str = "window_end",
    *,
    lo: int,
    hi: int,
) -> DataFrame:
    """The rows of windows inside ``[lo, hi]`` (ms)."""
    return df.where(
        (F.unix_millis(F.col(start_col)) >= F.lit(lo))
        & (F.unix_millis(F.col(end_col)) <= F.lit(hi))
    )


def _windows_compared(
    replayed: dict[str, DataFrame],
    stream: dict[str, DataFrame],
    in_windows: Callable[[DataFrame], DataFrame],
) -> int:
    """Closed windows in range that either side has a billing row for."""
    return (
        in_windows(
            replayed["billing"]
            .select("window_start", "window_end")
            .union(stream["billing"].select("window_start", "window_end"))
        )
        .distinct()
        .count()
    )


def _late_by_key(late: DataFrame, key: str) -> dict[tuple[int, str], int]:
    """Late records per (missed window start in ms, key)."""
    return {
        (r["w"], r["k"]): int(r["n"])
        for r in late.groupBy(
            F.unix_millis("missed_window_start").alias("w"), F.col(key).alias("k")
        )
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }


def _report_done(report: ParityReport) -> None:
    """A log line of the outcome (the report itself is the command's output)."""
    log.info(
        "parity from=%s to=%s windows=%s explained=%s unexplained=%s",
        iso(report.start),
        iso(report.end),
        report.windows,
        len(report.explained),
        len(report.unexplained),
    )


def _read_after(spark: SparkSession, s: runner.Settings, plan: ReplayPlan) -> DataFrame:
    """The topic after the plan's end offsets, up to its end now: where records of the
    range that arrived after the lateness margin are."""
    return read_kafka(spark, s.kafka, plan.assign_json(), plan.ending_offsets_json(), "latest")


def _by_window_and_key(cdrs: DataFrame, key: str, window: str) -> dict[tuple[int, str], int]:
    """Records per (window start in ms, key)."""
    start, _ = transforms.window_bounds(F.col("event_time"), window)
    return {
        (int(r["w"]), str(r["k"])): int(r["n"])
        for r in cdrs.groupBy(F.unix_millis(start).alias("w"), F.col(key).alias("k"))
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }


def _late(
    spark: SparkSession, fs: HadoopFs, root: str, s: runner.Settings, topic: str | None
) -> DataFrame:
    """Late records the aggregation captured: its ``late/`` Parquet, else the late topic."""
    cols = ["call_id", "caller_num", "tower_id", "missed_window_start", "missed_window_end"]
    folder = join(root, LATE_DIR)
    if fs.exists(folder) and fs.children(folder):
        return spark.read.parquet(folder).select(*cols)
    from replay.late import read_late_topic

    return read_late_topic(spark, s, cols)


def _differs(a: Column, b: Column, double: bool) -> Column:
    if double:
        both = a.isNotNull() & b.isNotNull()
        return (a.isNull() != b.isNull()) | (both & (F.abs(a - b) > F.lit(TOLERANCE)))
    return ~a.eqNullSafe(b)


def _compare_table(
    t: Table,
    *,
    stream: DataFrame,
    replayed: DataFrame,
    adjusted: DataFrame,
    late_by_key: dict[tuple[int, str], int],
    beyond_by_key: dict[tuple[int, str], int],
    report: ParityReport,
) -> None:
    keys = ["window_start", t.key]
    values = [c for c in t.column_names if c not in (*keys, "window_end")]
    doubles = {f.name for f in t.columns.fields if isinstance(f.dataType, DoubleType)}
    total, diff_rows = _differing_rows(
        keys, values, doubles, stream=stream, replayed=replayed, adjusted=adjusted
    )
    report.rows[t.name] = total
    report.matching[t.name] = total - len(diff_rows)
    for row in diff_rows:
        ws = row["window_start"]
        ws = ws.replace(tzinfo=UTC) if ws.tzinfo is None else ws
        n_late = late_by_key.get((to_ms(ws), row[t.key]), 0)
        n_beyond = beyond_by_key.get((to_ms(ws), row[t.key]), 0)
        s_vals = None if row["s_copies"] is None else {c: row[f"s_{c}"] for c in values}
        r_vals = None if row["r_present"] is None else {c: row[f"r_{c}"] for c in values}
        a_vals = None if row["a_present"] is None else {c: row[f"a_{c}"] for c in values}
        kind, reason = _classify(
            row["s_copies"],
            s_vals,
            r_vals,
            a_vals,
            n_late=n_late,
            n_beyond=n_beyond,
            values=values,
            doubles=doubles,
        )
        diff = Difference(
            t.name, iso(ws), str(row[t.key]), kind, reason, n_late, s_vals, r_vals, n_beyond
        )
        (report.explained if kind == "explained" else report.unexplained).append(diff)


def _differing_rows(
    keys: list[str],
    values: list[str],
    doubles: set[str],
    *,
    stream: DataFrame,
    replayed: DataFrame,
    adjusted: DataFrame,
) -> tuple[int, list[Any]]:
    """Rows of the stream, the replay and the adjusted replay joined by key: how many,
    and those where the stream differs from the replay (or has a key twice)."""
    s = stream.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("s_copies"), *[F.first(c).alias(f"s_{c}") for c in values]
    )
    r = replayed.select(
        *keys, *[F.col(c).alias(f"r_{c}") for c in values], F.lit(True).alias("r_present")
    )
    a = adjusted.select(
        *keys, *[F.col(c).alias(f"a_{c}") for c in values], F.lit(True).alias("a_present")
    )
    joined = s.join(r, keys, "full_outer").join(a, keys, "left_outer").persist()
    try:
        differs = F.lit(False)
        for c in values:
            differs = differs | _differs(F.col(f"s_{c}"), F.col(f"r_{c}"), c in doubles)
        differs = differs | F.coalesce(F.col("s_copies") > 1, F.lit(False))
        total = joined.count()
        diff_rows = joined.where(differs).collect()
    finally:
        joined.unpersist()
    return total, diff_rows


def _classify(
    s_copies: int | None,
    s_vals: dict[str, Any] | None,
    r_vals: dict[str, Any] | None,
    a_vals: dict[str, Any] | None,
    *,
    n_late: int,
    n_beyond: int,
    values: list[str],
    doubles: set[str],
) -> tuple[str, str]:
    """``(kind, reason)`` of a differing row: explained by late records or records beyond
    the margin when the stream equals the adjusted replay, otherwise unexplained."""
    if s_copies is not None and s_copies > 1:
        return "unexplained", f"{s_copies} rows in the stream output"
    if (n_late or n_beyond) and _same(s_vals, a_vals, doubles):
        reason = "; ".join(
            part
            for part in (
                n_late and f"{n_late} late record(s) missed this window in the stream",
                n_beyond
                and f"{n_beyond} record(s) arrived after the replay's lateness margin "
                "(the stream had them on time)",
            )
            if part
        )
        return "explained", reason
    if s_vals is None:
        return "unexplained", "missing from the stream output"
    if r_vals is None:
        return "unexplained", "in the stream output, not in the replay"
    changed = [c for c in values if not _same({c: s_vals[c]}, {c: r_vals[c]}, doubles)]
    return "unexplained", "differs in " + ", ".join(changed)


def _same(x: dict[str, Any] | None, y: dict[str, Any] | None, doubles: set[str]) -> bool:
    if x is None or y is None:
        return x is None and y is None
    for c, v in x.items():
        w = y.get(c)
        if v is None or w is None:
            if v is not w:
                return False
        elif c in doubles:
            if abs(float(v) - float(w)) > TOLERANCE:
                return False
        elif v != w:
            return False
    return True
