"""The aggregation query's checkpoint, at any Hadoop URL, read through Hadoop's FileSystem.

Spark owns the checkpoint: its offset log (``offsets/<N>``: the batch's watermark,
timestamp and end offsets), its commit log (``commits/<N>``), the Kafka source's
initial offsets (``sources/0/0``) and the state store (``state/``). The job reads
the logs (the late capture replays a batch's offset range with the watermark it
ran with), logs on start the no-data batch a restarted query would skip
(``plan_closing_batch``), and adds two small files of its own beside them:

- ``kappa-query.json``: the shape of the query that wrote the checkpoint; a
  checkpoint of another shape stops the job with ``IncompatibleCheckpointError``
  rather than Spark's error about its state;
- ``kappa-late.json``: the newest batch whose late and undecodable rows have been
  captured (``late``), and ``kappa-late/<batch>``: for each batch with drops, the
  CDRs captured beside Spark's own ``numRowsDroppedByWatermark``.

Everything goes through ``org.apache.hadoop.fs.FileSystem``, so ``file://``,
``hdfs://`` and plain local paths behave the same.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

from streams.aggregate.exceptions import IncompatibleCheckpointError

log = logging.getLogger(__name__)

SHAPE_FILE = "kappa-query.json"
SHAPE = {"query": "aggregate", "shape": 3, "state": "spark"}
LATE_FILE = "kappa-late.json"
RESET_FLAG = "--reset-checkpoint"


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One batch of the offset log."""

    batch_id: int
    watermark_ms: int
    """The watermark the batch ran with (Spark closes windows ending at or before it)."""
    timestamp_ms: int
    """The batch's processing time, the same on a re-run."""
    end_offsets: dict[str, dict[str, int]]
    """Per topic and partition (as text), the first offset after the batch."""


def _json_object(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        msg = "no JSON object"
        raise ValueError(msg)
    parsed = json.loads(text[start:])
    if not isinstance(parsed, dict):
        msg = "not a JSON object"
        raise ValueError(msg)
    return parsed


class Checkpoint:
    """Read and write files under one checkpoint location (a path or a Hadoop URL)."""

    def __init__(self, spark: SparkSession, location: str) -> None:
        self.location = location.rstrip("/")
        jvm: Any = spark.sparkContext._jvm
        self._jvm = jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
        self._fs = self._path(self.location).getFileSystem(conf)

    def _p(self, *parts: str) -> Any:
        return self._path("/".join([self.location, *parts]))

    def exists(self, *parts: str) -> bool:
        return bool(self._fs.exists(self._p(*parts)))

    def read_text(self, *parts: str) -> str | None:
        path = self._p(*parts)
        if not self._fs.exists(path):
            return None
        stream = self._fs.open(path)
        try:
            return str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def write_text(self, name: str, text: str) -> None:
        """Write ``name`` (a path under the checkpoint) whole: a temporary file renamed
        over the old one."""
        folder, _, leaf = name.rpartition("/")
        self._fs.mkdirs(self._p(folder) if folder else self._p())
        tmp = self._p(f"{folder}/.{leaf}.tmp" if folder else f".{leaf}.tmp")
        out = self._fs.create(tmp, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        target = self._p(name)
        if self._fs.exists(target):
            self._fs.delete(target, False)
        self._fs.rename(tmp, target)

    def batch_ids(self, folder: str) -> list[int]:
        path = self._p(folder)
        if not self._fs.exists(path):
            return []
        names = [s.getPath().getName() for s in self._fs.listStatus(path)]
        return sorted(int(n) for n in names if n.isdigit())

    def newest(self, folder: str) -> int:
        """The newest batch id in ``offsets`` or ``commits``; -1 when none."""
        ids = self.batch_ids(folder)
        return ids[-1] if ids else -1

    def committed(self) -> int:
        return self.newest("commits")

    def entry(self, batch_id: int) -> BatchEntry | None:
        """Batch ``batch_id`` of the offset log (None if it was never planned)."""
        text = self.read_text("offsets", str(batch_id))
        if text is None:
            return None
        lines = [line for line in text.splitlines() if line.startswith("{")]
        meta = json.loads(lines[0])
        sources = json.loads(lines[1]) if len(lines) > 1 else {}
        return BatchEntry(
            batch_id,
            int(meta.get("batchWatermarkMs") or 0),
            int(meta.get("batchTimestampMs") or 0),
            {t: {p: int(o) for p, o in parts.items()} for t, parts in sources.items()},
        )

    def start_offsets(self, batch_id: int) -> dict[str, dict[str, int]]:
        """Where batch ``batch_id`` started reading: the previous batch's end offsets,
        or for batch 0 the Kafka source's initial offsets."""
        if batch_id > 0:
            previous = self.entry(batch_id - 1)
            if previous is None:
                msg = f"batch {batch_id - 1} is missing from the offset log of {self.location}"
                raise IncompatibleCheckpointError(msg)
            return previous.end_offsets
        text = self.read_text("sources", "0", "0")
        if text is None:
            return {}
        parsed = _json_object(text)
        return {t: {p: int(o) for p, o in parts.items()} for t, parts in parsed.items()}

    def late_watermark_ms(self, batch_id: int) -> int:
        """The watermark Spark judged batch ``batch_id``'s rows late against: the one of
        the batch before (a window ending at or before it was already emitted)."""
        if batch_id == 0:
            return 0
        previous = self.entry(batch_id - 1)
        return 0 if previous is None else previous.watermark_ms

    def plan_closing_batch(self, now_ms: int) -> int | None:
        """Log the no-data batch that the newest committed batch's watermark asks for; its id,
        or None when none is owed.

        After each batch Spark runs a batch without new data when the watermark has moved
        (``nextBatchWatermarkMs`` of the commit above the ``batchWatermarkMs`` the batch ran
        with): it closes the windows that watermark passed. A restarted query no longer
        knows its last batch and waits for new data first, so a stop or a crash between
        the two would hold those windows back, and a drain would end without them. This
        writes the offset-log entry Spark would have written (the same end offsets and
        settings, the new watermark), which a starting query then runs as a batch that was
        logged and not committed."""
        newest = self.newest("offsets")
        if newest < 0 or self.committed() != newest:
            return None
        commit = self.read_text("commits", str(newest))
        logged = self.read_text("offsets", str(newest))
        if commit is None or logged is None:
            return None
        next_watermark = int(_json_object(commit).get("nextBatchWatermarkMs") or 0)
        lines = logged.split("\n")
        at = next((i for i, line in enumerate(lines) if line.startswith("{")), None)
        if at is None:
            return None
        meta = json.loads(lines[at])
        if next_watermark <= int(meta.get("batchWatermarkMs") or 0):
            return None
        meta["batchWatermarkMs"] = next_watermark
        meta["batchTimestampMs"] = now_ms
        lines[at] = json.dumps(meta, separators=(",", ":"))
        self.write_text(f"offsets/{newest + 1}", "\n".join(lines))
        return newest + 1

    # -- the job's own files ---------------------------------------------------
    def captured_through(self) -> int:
        """The newest batch whose late rows were captured; -1 when none."""
        found = self._marker(LATE_FILE)
        return -1 if found is None else int(found["batch"])

    def mark_captured(self, batch_id: int) -> None:
        self.write_text(LATE_FILE, json.dumps({"batch": batch_id}) + "\n")

    def _marker(self, name: str) -> dict[str, Any] | None:
        """The JSON object of this project's marker file ``name``; None if absent;
        a message naming the file if it is not what this project writes."""
        text = self.read_text(name)
        if text is None:
            return None
        try:
            found = json.loads(text)
            if isinstance(found, dict) and (
                name != LATE_FILE or isinstance(found.get("batch"), int)
            ):
                return found
        except ValueError:
            pass
        msg = (
            f"{self.location}/{name} is damaged ({text[:80]!r}); restore it from a backup, "
            f"or rerun with `kappa aggregate {RESET_FLAG}` to move the checkpoint and the "
            "tables it fed aside and rebuild from the topic"
        )
        raise IncompatibleCheckpointError(msg)

    def check_shape(self) -> None:
        """Mark a new checkpoint with this query's shape; refuse one of another shape."""
        found = self._marker(SHAPE_FILE)
        if found is not None:
            if found == SHAPE:
                return
            written_by = f"shape {found.get('shape')!r}"
        elif self.batch_ids("offsets") or self.exists("metadata"):
            written_by = "an older shape"
        else:
            self.write_text(SHAPE_FILE, json.dumps(SHAPE) + "\n")
            return
        raise IncompatibleCheckpointError(incompatible_message(self.location, written_by))

    def move_aside(self, now: datetime | None = None) -> str | None:
        """Rename the checkpoint to ``<location>.reset-<UTC time>``; None if there is none."""
        if not self._fs.exists(self._p()):
            return None
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        target = f"{self.location}.reset-{stamp}"
        if not self._fs.rename(self._p(), self._path(target)):
            msg = f"could not move the checkpoint {self.location} to {target}"
            raise OSError(msg)
        log.warning("checkpoint %s moved to %s", self.location, target)
        return target


def incompatible_message(location: str, written_by: str = "an older shape") -> str:
    return (
        f"the checkpoint {location} was written by {written_by} of the aggregation "
        f"query and cannot be resumed; rerun with `kappa aggregate {RESET_FLAG}` to move "
        "it and the tables it fed aside and rebuild from the topic"
    )
