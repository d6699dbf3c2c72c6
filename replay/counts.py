"""What a run counts: records per partition, schema id and place against the range, and
the summary figures of its two aggregate tables."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from replay.manifest import Counts, PartitionCounts
from replay.plan import ReplayPlan
from replay.transform import WHERE

_TOTAL_OF_WHERE = {
    "before": "before_range",
    "in": "records",
    "after": "after_range",
    "undecodable": "undecodable",
}


@dataclass(frozen=True)
class RunCounts:
    """The counts of a run, as the manifest keeps them."""

    totals: Counts
    partitions: tuple[PartitionCounts, ...]
    schema_ids: dict[str, int]


@dataclass(frozen=True)
class BillingTotals:
    callers: int
    revenue: float


@dataclass(frozen=True)
class NetworkTotals:
    towers: int


def count_rows(sorted_rows: DataFrame, plan: ReplayPlan) -> RunCounts:
    """Per partition and schema id: records read, before, in and after the range
    (``sorted_rows`` carries the ``where`` column)."""
    rows = (
        sorted_rows.groupBy("kafka_partition", "schema_id", WHERE)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.min("kafka_offset").alias("lo"),
            F.max("kafka_offset").alias("hi"),
        )
        .collect()
    )
    return tally(rows, plan)


def tally(rows: list[Any], plan: ReplayPlan) -> RunCounts:
    """``RunCounts`` of the grouped rows (partition, schema id, where: n, lo, hi)."""
    parts = {s.partition: PartitionCounts(s.partition, s.start, s.end) for s in plan.spans}
    schema_ids: dict[str, int] = {}
    totals = dict.fromkeys(_TOTAL_OF_WHERE.values(), 0) | {"read": 0}
    for r in rows:
        pid, n = int(r["kafka_partition"]), int(r["n"])
        parts[pid] = _add(parts[pid], n, int(r["lo"]), int(r["hi"]), inside=r[WHERE] == "in")
        totals["read"] += n
        totals[_TOTAL_OF_WHERE[r[WHERE]]] += n
        if r[WHERE] == "in":
            sid = str(r["schema_id"])
            schema_ids[sid] = schema_ids.get(sid, 0) + n
    return RunCounts(
        Counts(**totals),
        tuple(parts[k] for k in sorted(parts)),
        dict(sorted(schema_ids.items())),
    )


def _add(p: PartitionCounts, n: int, lo: int, hi: int, *, inside: bool) -> PartitionCounts:
    first, last = p.first_offset_read, p.last_offset_read
    return replace(
        p,
        read=p.read + n,
        in_range=p.in_range + (n if inside else 0),
        first_offset_read=lo if first is None else min(lo, first),
        last_offset_read=hi if last is None else max(hi, last),
    )


def billing_totals(spark: SparkSession, url: str) -> BillingTotals:
    """Callers and revenue of the range, from its (small) billing table: every record of
    the range is in exactly one billing row (its caller's), so no pass over the records."""
    row = (
        spark.read.parquet(url)
        .agg(F.countDistinct("caller_num").alias("callers"), F.sum("revenue").alias("revenue"))
        .first()
    )
    if not row:
        return BillingTotals(0, 0.0)
    return BillingTotals(int(row["callers"]), round(float(row["revenue"] or 0.0), 4))


def network_totals(spark: SparkSession, url: str) -> NetworkTotals:
    """Towers of the range, from its tower health table."""
    row = spark.read.parquet(url).agg(F.countDistinct("tower_id").alias("towers")).first()
    return NetworkTotals(int(row["towers"]) if row else 0)
