"""A started aggregation query: its sink's history, the late capture fed from its
progress reports, and the one restart Spark's progress-report bug calls for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.errors import StreamingQueryException
from pyspark.sql.streaming.query import StreamingQuery

from streams import spark_errors
from streams.aggregate.late import LateCapture, progress_flags
from streams.aggregate.paths import Paths
from streams.aggregate.window_sink import BatchCounts, WindowSink

log = logging.getLogger(__name__)

MAX_RECOVERIES = 3


def recoverable(exc: BaseException) -> bool:
    """Spark 4.1.1's Kafka source fails the progress report of the first batch after a
    restart when that batch re-runs one logged before a crash: ``latestPartitionOffsets``
    was never fetched (NullPointerException in ``KafkaMicroBatchStream.metrics``). The
    batch's sink output and its commit are written before the report, so restarting the
    query once more simply goes on with the next batch."""
    return spark_errors.progress_report_bug(exc)


@dataclass
class AggregateQuery:
    """A started aggregation query, its sink and its late capture."""

    query: StreamingQuery
    sink: WindowSink
    capture: LateCapture
    paths: Paths
    restart: Callable[[], StreamingQuery] | None = None
    restarts: int = 0
    _seen: int = -1

    @property
    def history(self) -> list[BatchCounts]:
        return [self.sink.history[b] for b in sorted(self.sink.history)]

    def capture_committed(self) -> int:
        """Hand the new progress reports to the capture and capture every committed batch;
        the newest batch id reported (-1 before any)."""
        newest = self._seen
        for progress in self.query.recentProgress:
            flags = progress_flags(progress)
            if flags is None:
                continue
            if flags.batch_id > self._seen:
                self.capture.note(flags.batch_id, flags.dropped, flags.undecodable)
                newest = max(newest, flags.batch_id)
        self._seen = newest
        self.capture.catch_up(newest)
        return newest

    def process_all_available(self) -> None:
        """Process what is available and capture it; survives the Spark progress bug."""
        while True:
            try:
                self.query.processAllAvailable()
                self.capture_committed()
                return
            except StreamingQueryException as exc:
                if not self.recover(exc):
                    raise

    def recover(self, exc: BaseException) -> bool:
        """Restart after ``exc`` if it is the known harmless failure; False otherwise."""
        if self.restart is None or not recoverable(exc) or self.restarts >= MAX_RECOVERIES:
            return False
        self.restarts += 1
        log.warning(
            "restarting the query after Spark's progress-report failure on a re-run "
            "batch (its output and commit are complete)"
        )
        self.query = self.restart()
        return True

    def stop(self) -> None:
        self.query.stop()
        self.capture_committed()
