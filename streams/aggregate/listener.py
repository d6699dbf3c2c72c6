"""A StreamingQueryListener turning Spark's progress reports into Prometheus metrics.

Everything here is Spark's own figure for the aggregation query: input rows and
rates, the batch duration, the event-time watermark, the rows in the state store
and the rows its watermark dropped (per row reaching the stateful operator, i.e.
per late (window, table, key) group of a batch; the late CDRs themselves are
counted by the capture, ``kappa_aggregate_late_records_total``).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from pyspark.sql.streaming.listener import StreamingQueryListener

from monitoring import metrics

log = logging.getLogger(__name__)


def _epoch_s(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def record_progress(progress: dict[str, Any]) -> None:
    """Update the ``kappa_aggregate_*`` metrics from one progress report (its JSON form)."""
    metrics.AGGREGATE_INPUT_ROWS_PER_SECOND.set(float(progress.get("inputRowsPerSecond") or 0))
    metrics.AGGREGATE_PROCESSED_ROWS_PER_SECOND.set(
        float(progress.get("processedRowsPerSecond") or 0)
    )
    metrics.AGGREGATE_INPUT_ROWS.inc(int(progress.get("numInputRows") or 0))
    duration_ms = (progress.get("durationMs") or {}).get("triggerExecution")
    if duration_ms is not None:
        metrics.AGGREGATE_BATCH_SECONDS.observe(float(duration_ms) / 1000.0)
    watermark = _epoch_s((progress.get("eventTime") or {}).get("watermark"))
    now = _epoch_s(progress.get("timestamp"))
    if watermark is not None:
        metrics.AGGREGATE_WATERMARK_SECONDS.set(watermark)
        if now is not None and watermark > 0:
            metrics.AGGREGATE_WATERMARK_DELAY_SECONDS.set(now - watermark)
    operators = progress.get("stateOperators") or []
    for op in operators:
        name = str(op.get("operatorName") or "stateful")
        metrics.AGGREGATE_STATE_ROWS.labels(operator=name).set(int(op.get("numRowsTotal") or 0))
        metrics.AGGREGATE_DROPPED_BY_WATERMARK.inc(int(op.get("numRowsDroppedByWatermark") or 0))


class MetricsListener(StreamingQueryListener):
    """Feeds ``record_progress`` with every progress report of this session's queries."""

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's API
        log.debug("query started id=%s", event.id)

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802 - Spark's API
        try:
            record_progress(json.loads(event.progress.json))
        except Exception:  # a metrics bug must not stop the query
            log.exception("could not record query progress")

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802 - Spark's API
        return

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802 - Spark's API
        log.debug("query terminated id=%s", event.id)
