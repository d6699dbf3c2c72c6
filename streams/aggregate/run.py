"""The aggregation's run loop: start the query, feed the late capture while it runs,
and restart it after a failure it can recover from (Spark's progress-report bug, a
schema id registered after the start)."""

from __future__ import annotations

import logging
import threading

from confluent_kafka.schema_registry import SchemaRegistryClient
from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession

from kappa import clients
from kappa.settings import (
    AggregateSettings,
    KafkaSettings,
    RegistrySettings,
    StackSettings,
    TopicSettings,
)
from streams import spark_errors
from streams.aggregate.checkpoint import incompatible_message
from streams.aggregate.decode import Decoders, unknown_id_in
from streams.aggregate.exceptions import AggregateError, IncompatibleCheckpointError
from streams.aggregate.handle import AggregateQuery
from streams.aggregate.query import start
from streams.aggregate.window_sink import BatchCounts

log = logging.getLogger(__name__)


def run(
    spark: SparkSession,
    settings: AggregateSettings,
    *,
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    stack: StackSettings,
    output: str | None = None,
    trigger: str | None = None,
    until_idle: bool = False,
    stop: threading.Event | None = None,
    decoders: Decoders | None = None,
) -> list[BatchCounts]:
    """Run until stopped, or with ``until_idle`` (Spark's ``availableNow`` trigger)
    until what the topic held at the start is read and every window the watermark
    then closed is written.

    A batch that met a schema id registered after the start fails before its
    commit; the versions are fetched again and the query restarts from its
    checkpoint, redoing that batch.
    """
    reg = clients.registry(registry)
    history: list[BatchCounts] = []
    seen_unknown: set[int] = set()
    handle: AggregateQuery | None = None
    try:
        while True:
            if handle is None:
                handle = start(
                    spark,
                    settings,
                    kafka=kafka,
                    registry=registry,
                    topics=topics,
                    stack=stack,
                    output=output,
                    trigger=trigger,
                    available_now=until_idle,
                    decoders=decoders,
                )
            try:
                _await(handle, stop)
                history.extend(handle.history)
                return history
            except StreamingQueryException as exc:
                if handle.recover(exc):
                    continue
                history.extend(handle.history)
                decoders = _refetched(exc, handle, reg, topics.valid, seen_unknown)
                handle = None
    finally:
        if handle is not None and handle.query.isActive:
            handle.stop()


def _await(handle: AggregateQuery, stop: threading.Event | None) -> None:
    """Until the query ends (by itself, or stopped once ``stop`` is set), capturing
    every committed batch."""
    while not handle.query.awaitTermination(1):
        handle.capture_committed()
        if stop is not None and stop.is_set():
            handle.stop()
    handle.capture_committed()


def _refetched(
    exc: StreamingQueryException,
    handle: AggregateQuery,
    reg: SchemaRegistryClient,
    source: str,
    seen_unknown: set[int],
) -> Decoders:
    """The decoders to restart with after a query failed on a schema id first met
    (``seen_unknown`` learns it); any other failure raised as the job's error."""
    if spark_errors.checkpoint_mismatch(exc):
        msg = incompatible_message(handle.paths.checkpoint)
        raise IncompatibleCheckpointError(msg) from exc
    schema_id = unknown_id_in(str(exc))
    if schema_id is None or schema_id in seen_unknown:
        msg = f"the aggregation query failed: {spark_errors.first_line(exc)}"
        raise AggregateError(msg) from exc
    seen_unknown.add(schema_id)
    log.warning(
        "schema id %s appeared after start; fetching the subject's "
        "versions and restarting from the checkpoint",
        schema_id,
    )
    decoders = Decoders.fetch(reg, source)
    if schema_id not in decoders.writers:
        decoders = decoders.with_id(reg, schema_id)
    return decoders
