"""``kappa aggregate --reset``: the checkpoint and the tables it fed moved aside."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from streams.aggregate.checkpoint import Checkpoint
from streams.aggregate.paths import TABLE_FOLDERS, Paths
from streams.aggregate.sinks import ParquetTables


@dataclass(frozen=True)
class ResetReport:
    checkpoint: str | None
    tables: list[str]


def reset(spark: SparkSession, paths: Paths, now: datetime | None = None) -> ResetReport:
    """Move the checkpoint and the tables it fed aside, so that the next start rebuilds
    them from the topic (from ``starting_offsets``) with nothing doubled."""
    now = now or datetime.now(UTC)
    moved = Checkpoint(spark, paths.checkpoint).move_aside(now)
    aside = f"_reset-{now.strftime('%Y%m%dT%H%M%SZ')}"
    tables = ParquetTables(spark, paths.output).move_aside(TABLE_FOLDERS, aside)
    return ResetReport(moved, tables)
