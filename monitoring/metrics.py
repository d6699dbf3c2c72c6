"""Prometheus metrics, as module-level constants with units and low-cardinality labels.

Each long-running process serves them with ``serve(port)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.metrics_core import Metric

from monitoring.last_window import LastClosedWindow

log = logging.getLogger(__name__)

# -- producer -----------------------------------------------------------------------
PRODUCER_RECORDS = Counter(
    "kappa_producer_records_total", "CDRs handed to Kafka, by call type", ["call_type"]
)
PRODUCER_FAULTS = Counter(
    "kappa_producer_faults_injected_total", "Faulty records injected on purpose, by kind", ["kind"]
)
PRODUCER_SEND_ERRORS = Counter(
    "kappa_producer_send_errors_total", "Records Kafka failed to deliver"
)
PRODUCER_DELIVERY_SECONDS = Histogram(
    "kappa_producer_delivery_latency_seconds",
    "From produce() to the broker's acknowledgement",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


# -- business: the last closed 5-minute window ---------------------------------------
# One collector, fed by monitoring.business.publish_gauges(): its gauges appear once
# the aggregation job closed a window, and a scrape never mixes two windows' values.
#   kappa_business_window_end_timestamp_seconds{table}  event-time end of the last closed window
#   kappa_business_window_emit_delay_seconds{table}     wall time at emission minus that end
#   kappa_business_windows_closed_total{table}          closed windows recorded
#   kappa_business_window_revenue                       revenue (rate-card currency)
#   kappa_business_window_active_callers                callers billed in the window
#   kappa_business_window_billable_minutes              billable minutes
#   kappa_business_window_towers                        towers reporting
#   kappa_business_window_low_signal_towers             towers at or above the low-signal share
#   kappa_business_window_low_signal_ratio              low-signal share of all events (0..1)
#   kappa_business_window_average_signal_bars           event-weighted mean signal (1..5)
#   kappa_business_window_events{call_type}             events by call type
BUSINESS_LAST_WINDOW = LastClosedWindow(REGISTRY)

# -- validator ----------------------------------------------------------------------
VALIDATOR_RECORDS_IN = Counter(
    "kappa_validator_records_in_total", "Raw records consumed and judged by the validator"
)
VALIDATOR_VALID = Counter(
    "kappa_validator_records_valid_total", "Records written to cdr.valid by the validator"
)
VALIDATOR_DEAD_LETTERED = Counter(
    "kappa_validator_records_dead_lettered_total",
    "Records written to cdr.dlq, by failed rule (a record failing two rules counts under both)",
    ["rule"],
)
VALIDATOR_BATCH_RECORDS = Histogram(
    "kappa_validator_batch_records",
    "Records per micro-batch",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000),
)
VALIDATOR_BATCH_SECONDS = Histogram(
    "kappa_validator_batch_seconds",
    "Wall time of one micro-batch, consume to commit",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
VALIDATOR_GX_SECONDS = Histogram(
    "kappa_validator_gx_seconds",
    "Great Expectations suite run time per micro-batch",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
VALIDATOR_TRANSACTION_SECONDS = Histogram(
    "kappa_validator_transaction_seconds",
    "Kafka transaction time per micro-batch (produce, send offsets, commit)",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
VALIDATOR_ABORTS = Counter(
    "kappa_validator_transactions_aborted_total", "Micro-batch transactions aborted and rewound"
)
VALIDATOR_CONSUMER_LAG = Gauge(
    "kappa_validator_consumer_lag_records",
    "Records of cdr.raw not yet judged, per partition",
    ["partition"],
)
VALIDATOR_DEDUP_KEYS = Gauge("kappa_validator_dedup_keys", "call_ids held in the dedup state")


# -- replay -------------------------------------------------------------------------
REPLAY_RUNS = Counter(
    "kappa_replay_runs_total", "Replay runs, by outcome (success, failed, refused)", ["outcome"]
)
REPLAY_RECORDS = Counter(
    "kappa_replay_records_total", "CDRs written by replays (records inside their ranges)"
)
REPLAY_SECONDS = Histogram(
    "kappa_replay_duration_seconds",
    "Wall time of a successful replay, planning to publication",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
REPLAY_LAST_SUCCESS = Gauge(
    "kappa_replay_last_success_timestamp_seconds", "When the last replay succeeded (Unix time)"
)
REPLAY_LAST_INTERVAL_END = Gauge(
    "kappa_replay_last_interval_end_timestamp_seconds",
    "End (exclusive) of the event-time interval of the last successful replay (Unix time)",
)
REPLAY_INTERVAL_RECORDS = Gauge(
    "kappa_replay_interval_records", "CDRs of the last replayed interval"
)
REPLAY_INTERVAL_CUSTOMERS = Gauge(
    "kappa_replay_interval_customers", "Distinct callers of the last replayed interval"
)
REPLAY_INTERVAL_TOWERS = Gauge(
    "kappa_replay_interval_towers", "Distinct towers of the last replayed interval"
)
REPLAY_INTERVAL_REVENUE = Gauge(
    "kappa_replay_interval_revenue", "Revenue of the last replayed interval (rate-card currency)"
)


# -- aggregate (Spark Structured Streaming; fed by streams.aggregate.listener) --------------
AGGREGATE_INPUT_ROWS_PER_SECOND = Gauge(
    "kappa_aggregate_input_rows_per_second", "Rows per second arriving, last micro-batch"
)
AGGREGATE_PROCESSED_ROWS_PER_SECOND = Gauge(
    "kappa_aggregate_processed_rows_per_second", "Rows per second processed, last micro-batch"
)
AGGREGATE_INPUT_ROWS = Counter(
    "kappa_aggregate_input_rows_total", "Rows read from cdr.valid by the aggregation query"
)
AGGREGATE_BATCH_SECONDS = Histogram(
    "kappa_aggregate_batch_duration_seconds",
    "Wall time of one micro-batch",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
AGGREGATE_WATERMARK_SECONDS = Gauge(
    "kappa_aggregate_watermark_timestamp_seconds", "Event-time watermark of the last micro-batch"
)
AGGREGATE_WATERMARK_DELAY_SECONDS = Gauge(
    "kappa_aggregate_watermark_delay_seconds",
    "Processing time of the last micro-batch minus its event-time watermark",
)
AGGREGATE_STATE_ROWS = Gauge(
    "kappa_aggregate_state_rows",
    "Rows in Spark's state store (open windows per table and key), by stateful operator",
    ["operator"],
)
AGGREGATE_DROPPED_BY_WATERMARK = Counter(
    "kappa_aggregate_rows_dropped_by_watermark_total",
    "Spark's numRowsDroppedByWatermark: late (window, table, key) groups its stateful "
    "aggregation dropped (the CDRs behind them are in kappa_aggregate_late_records_total)",
)
AGGREGATE_LATE_RECORDS = Counter(
    "kappa_aggregate_late_records_total",
    "Late CDRs captured to late/ and cdr.late: the rows Spark's watermark dropped",
)
AGGREGATE_UNDECODABLE_RECORDS = Counter(
    "kappa_aggregate_undecodable_records_total", "cdr.valid values that were not a record"
)
AGGREGATE_WINDOW_ROWS = Counter(
    "kappa_aggregate_window_rows_total", "Closed window rows emitted, by table", ["table"]
)


class _OwnMetrics(CollectorRegistry):
    """The default registry, less other components' metrics.

    Every process imports this module, so every metric is registered everywhere;
    a process serves only its own (by name prefix) and the process/runtime ones,
    so that a scrape never shows another stage's zeros as if they were its own.
    """

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__(auto_describe=False)
        self._prefixes = (*prefixes, "process_", "python_")

    def collect(self) -> Iterator[Metric]:
        for metric in REGISTRY.collect():
            if metric.name.startswith(self._prefixes):
                yield metric


def serve(port: int, host: str = "127.0.0.1", *, prefixes: tuple[str, ...] | None = None) -> None:
    """Serve this process's metrics on ``host:port`` (port 0: don't).

    ``prefixes``: serve only metrics whose names start with one of them (e.g.
    ``("kappa_validator_",)``); None serves everything registered.
    """
    if port:
        registry = REGISTRY if prefixes is None else _OwnMetrics(prefixes)
        start_http_server(port, addr=host, registry=registry)
        log.info("metrics served port=%s prefixes=%s", port, prefixes)
