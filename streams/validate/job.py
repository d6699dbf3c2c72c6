"""``kappa validate``: the transactional consume-transform-produce loop around ``routing``.

One consumer reads ``cdr.raw`` and the internal topic keyed by call_id
(``repartition``) in one group. Per micro-batch (at most ``batch_size`` records
or ``batch_seconds`` of waiting): raw records are forwarded to the internal
topic under their call_id, internal ones are judged (decode + GX + dedup, pure),
then one Kafka transaction holds the forwarded records, the cdr.valid writes,
the cdr.dlq writes and the consumer offsets of both topics
(``send_offsets_to_transaction``). Exactly once: a crash before the commit
leaves nothing visible to read_committed readers and the offsets where they
were; the next instance with the same ``transactional.id`` aborts the open
transaction in ``init_transactions``. On a Kafka error the transaction is
aborted, the consumer rewound to the batch's first offsets and the batch judged
again. The dedup state learns a batch's call_ids only after its commit.

Pipelined by one batch: ``commit_transaction`` (the broker's round trips, the
GIL released) runs on a worker thread while the next batch is consumed and
judged; its transaction begins only once that commit is known. The next batch
is judged with the committing batch's call_ids as provisionally taken; if the
commit fails, both batches are dropped and the consumer rewound to the first's
offsets, so nothing is judged against a batch that did not happen. A
rebalance waits for the commit in flight before partitions move.

The parts: ``connections`` (the consumer, the transactional producer, the topic
check), ``transaction`` (one batch's transaction, pipelined), ``rebalance`` (the
group's callbacks), ``loop`` (the consume loop), ``encoding`` and ``stats``. This
module starts and stops them. A producer that librdkafka leaves wedged (a broker call
past its timeout, for good, after a broker left the cluster) is replaced by
``transaction`` with one of the same ``transactional.id``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer

from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings, ValidatorSettings
from streams.validate import repartition
from streams.validate.connections import group_consumer, transactional_producer, valid_partitions
from streams.validate.loop import StopWhen, loop
from streams.validate.rebalance import Rebalance
from streams.validate.stats import RunStats
from streams.validate.transaction import Transactions

__all__ = ["RunStats", "run"]

log = logging.getLogger(__name__)


def run(
    kafka: KafkaSettings,
    registry: RegistrySettings,
    topics: TopicSettings,
    settings: ValidatorSettings,
    *,
    stop: threading.Event | None = None,
    max_idle_s: float | None = None,
    until_caught_up: bool = False,
    on_batch: Callable[[RunStats], None] | None = None,
) -> RunStats:
    """Validate ``topics.raw`` until ``stop`` is set (or idle/caught up, if asked)."""
    stop = stop or threading.Event()
    started = time.monotonic()
    txns = Transactions(kafka, registry, topics, settings)
    consumer = group_consumer(kafka, settings)
    try:
        _start(txns, consumer, on_batch)
        txns.stats.startup_seconds = time.monotonic() - started
        loop(txns, consumer, stop, StopWhen(max_idle_s, until_caught_up))
    finally:
        txns.close()
        txns.stats.seconds = time.monotonic() - started
        consumer.close()
        if txns.producer is not None:  # the one started here, or its replacement
            txns.producer.flush(10)
    log.info("validator stopped %s", " ".join(f"{k}={v}" for k, v in txns.stats.as_dict().items()))
    return txns.stats


def _start(
    txns: Transactions, consumer: Consumer, on_batch: Callable[[RunStats], None] | None
) -> None:
    """Check the topics, create the internal one, start the transactional producer and
    subscribe."""
    kafka, topics, settings = txns.kafka, txns.topics, txns.settings
    repartition.ensure_topic(kafka, txns.internal, valid_partitions(consumer, kafka, topics))
    producer = transactional_producer(kafka, settings, settings.transactional_id)
    txns.producer, txns.on_batch = producer, on_batch  # txns replaces it if it wedges
    rebalance = Rebalance(txns)
    consumer.subscribe(
        [topics.raw, txns.internal],
        on_assign=rebalance.on_assign,
        on_revoke=rebalance.on_revoke,
        on_lost=rebalance.on_revoke,
    )
    log.info(
        "validator started raw=%s internal=%s valid=%s dlq=%s suite=%s transactional_id=%s",
        topics.raw,
        txns.internal,
        topics.valid,
        topics.dlq,
        settings.suite_version,
        settings.transactional_id,
    )
