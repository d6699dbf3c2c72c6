"""Prometheus metrics, as module-level constants with units and low-cardinality labels.

Each long-running process serves them with ``serve(port)``.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram, start_http_server

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


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve this process's metrics on ``host:port`` (port 0: don't)."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics served port=%s", port)
