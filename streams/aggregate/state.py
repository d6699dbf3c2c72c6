"""The open windows between micro-batches, kept by the job itself under its checkpoint.

The streaming query only reads Kafka (one scan per micro-batch); its
``foreachBatch`` decodes the batch once, and folds it into the windows still
open. Batch ``N`` reads the state batch ``N-1`` wrote and writes its own::

    <checkpoint>/windows/<N>/open/       per open window and caller or tower: the
                                         sums of ``transforms.keyed_partial`` (Parquet)
    <checkpoint>/windows/<N>/state.json  max event time seen, watermark, row counts

``state.json`` is written last: a batch whose file is missing never finished.
Spark commits batch ``N`` only after ``foreachBatch`` returns, so a batch that
fails or is killed is redone from the same offsets over the same state ``N-1``,
and overwrites what it wrote: nothing is counted twice.

Clock, as Spark's own streaming aggregation in append mode would have it with
a watermark ``delay``: ``W = max event time - delay``; a window is emitted
(closed) once ``window_end <= W``, and a row whose window is already closed is
late. Here batch ``N`` judges rows late against the watermark after ``N-1`` and
closes windows with the watermark after ``N`` itself, in the same batch (Spark
needs an extra, data-less batch for that), so a row is late exactly when its
window was already emitted.

``kappa-query.json`` marks the shape of the query that wrote the checkpoint; a
checkpoint of another shape stops the job with ``IncompatibleCheckpointError``
rather than Spark's error about its sources.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    ArrayType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streams.aggregate.exceptions import IncompatibleCheckpointError
from streams.aggregate.transforms import KEYED_SUMS

log = logging.getLogger(__name__)

STATE_DIR = "windows"
SHAPE_FILE = "kappa-query.json"
SHAPE = {"query": "aggregate", "shape": 2, "state": STATE_DIR}
RETAIN_BATCHES = 5
RESET_FLAG = "--reset-checkpoint"

OPEN_SCHEMA = StructType(
    [
        StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()),
        StructField("kind", StringType()),
        StructField("key", StringType()),
        *[StructField(c, LongType()) for c in KEYED_SUMS],
        StructField("callers", ArrayType(StringType())),
    ]
)
"""The open windows between batches: ``keyed_partial`` rows without ``max_event_time``."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """What ``state.json`` of one batch holds."""

    batch_id: int
    max_event_ms: int | None
    """The largest event time of every batch up to this one (None: no record yet)."""
    watermark_ms: int
    """``max_event_ms - delay`` (0 before any record): windows ending at or before it are
    closed, rows of those windows are late from the next batch on."""
    billing_rows: int = 0
    """Open (caller, window) rows kept for the next batch."""
    network_rows: int = 0
    """Open (tower, window) rows kept for the next batch."""

    def advanced(self, batch_id: int, batch_max_ms: int | None, delay_ms: int) -> Stamp:
        """The clock after ``batch_id``, whose largest event time is ``batch_max_ms``."""
        known = [m for m in (self.max_event_ms, batch_max_ms) if m is not None]
        top = max(known) if known else None
        watermark = max(self.watermark_ms, top - delay_ms) if top is not None else 0
        return Stamp(batch_id, top, watermark)


START = Stamp(-1, None, 0)


class WindowState:
    """Reads and writes the open windows of one checkpoint."""

    def __init__(self, spark: SparkSession, checkpoint: Path) -> None:
        self.spark = spark
        self.checkpoint = checkpoint
        self.root = checkpoint / STATE_DIR

    def folder(self, batch_id: int) -> Path:
        return self.root / str(batch_id)

    def stamp(self, batch_id: int) -> Stamp | None:
        """The finished state of ``batch_id``; None if it never finished."""
        return read_stamp(self.checkpoint, batch_id)

    def before(self, batch_id: int) -> Stamp:
        """The state batch ``batch_id`` starts from: that of ``batch_id - 1``."""
        if batch_id == 0:
            return START
        found = self.stamp(batch_id - 1)
        if found is None:
            msg = (
                f"the checkpoint {self.checkpoint} has no window state for batch "
                f"{batch_id - 1}; it was not written by this version of the query. "
                f"Run `kappa aggregate {RESET_FLAG}` to start over"
            )
            raise IncompatibleCheckpointError(msg)
        return found

    def open_windows(self, stamp: Stamp) -> DataFrame:
        """The windows still open after ``stamp.batch_id`` (``OPEN_SCHEMA``)."""
        if stamp.batch_id < 0 or stamp.billing_rows + stamp.network_rows == 0:
            return self.spark.createDataFrame([], OPEN_SCHEMA)
        return self.spark.read.schema(OPEN_SCHEMA).parquet(
            str(self.folder(stamp.batch_id) / "open")
        )

    def write(self, stamp: Stamp, open_windows: DataFrame | None) -> None:
        """Write the open windows of ``stamp.batch_id``, then its ``state.json``."""
        folder = self.folder(stamp.batch_id)
        (folder / "state.json").unlink(missing_ok=True)
        if open_windows is not None and stamp.billing_rows + stamp.network_rows:
            open_windows.coalesce(1).write.mode("overwrite").parquet(str(folder / "open"))
        folder.mkdir(parents=True, exist_ok=True)
        data = {
            "batch_id": stamp.batch_id,
            "max_event_ms": stamp.max_event_ms,
            "watermark_ms": stamp.watermark_ms,
            "billing_rows": stamp.billing_rows,
            "network_rows": stamp.network_rows,
        }
        tmp = folder / "state.json.tmp"
        tmp.write_text(json.dumps(data), "utf-8")
        tmp.replace(folder / "state.json")
        self._prune(stamp.batch_id)

    def _prune(self, newest: int) -> None:
        for path in self.root.iterdir():
            if path.name.isdigit() and int(path.name) < newest - RETAIN_BATCHES:
                shutil.rmtree(path, ignore_errors=True)


def read_stamp(checkpoint: Path, batch_id: int) -> Stamp | None:
    """The finished state of ``batch_id``; None if it never finished."""
    path = checkpoint / STATE_DIR / str(batch_id) / "state.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text("utf-8"))
    return Stamp(
        batch_id=int(data["batch_id"]),
        max_event_ms=data["max_event_ms"],
        watermark_ms=int(data["watermark_ms"]),
        billing_rows=int(data["billing_rows"]),
        network_rows=int(data["network_rows"]),
    )


def committed_stamp(checkpoint: Path) -> Stamp | None:
    """The state of the newest batch Spark committed (None before the first)."""
    commits = [int(p.name) for p in (checkpoint / "commits").glob("[0-9]*") if p.name.isdigit()]
    return read_stamp(checkpoint, max(commits)) if commits else None


def check_shape(checkpoint: Path) -> None:
    """Mark a new checkpoint with this query's shape; refuse one of another shape."""
    marker = checkpoint / SHAPE_FILE
    if marker.exists():
        found = json.loads(marker.read_text("utf-8"))
        if found == SHAPE:
            return
        written_by = f"shape {found.get('shape')!r}"
    elif _has_batches(checkpoint):
        written_by = "an older shape"
    else:
        checkpoint.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(SHAPE) + "\n", "utf-8")
        return
    raise IncompatibleCheckpointError(incompatible_message(checkpoint, written_by))


def incompatible_message(checkpoint: Path, written_by: str = "an older shape") -> str:
    return (
        f"the checkpoint {checkpoint} was written by {written_by} of the aggregation "
        f"query and cannot be resumed; rerun with `kappa aggregate {RESET_FLAG}` to move "
        "it and the tables it fed aside and rebuild from the topic"
    )


def _has_batches(checkpoint: Path) -> bool:
    return (
        any(p.name.isdigit() for p in (checkpoint / "offsets").glob("*"))
        or (checkpoint / "metadata").exists()
    )


def move_aside(checkpoint: Path, now: datetime | None = None) -> Path | None:
    """Rename ``checkpoint`` to ``<checkpoint>.reset-<UTC time>``; None if there is none."""
    if not checkpoint.exists():
        return None
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = checkpoint.with_name(f"{checkpoint.name}.reset-{stamp}")
    checkpoint.rename(target)
    log.warning("checkpoint %s moved to %s", checkpoint, target)
    return target
