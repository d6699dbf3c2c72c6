"""The consumer group's rebalance callbacks: partitions never move with a commit in
flight, and the dedup state follows the internal topic's assignment."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, TopicPartition

from kappa import clients
from monitoring import metrics
from streams.validate.dedup import rebuild
from streams.validate.transaction import Transactions

log = logging.getLogger(__name__)


class Rebalance:
    """``on_assign`` and ``on_revoke`` (and ``on_lost``) of the validator's consumer."""

    def __init__(self, txns: Transactions) -> None:
        self.txns = txns

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        txns = self.txns
        self._settle(consumer)
        parts = [(tp.topic, tp.partition) for tp in partitions]
        self._log("assigned", parts)
        rebuild(
            txns.dedup,
            self._side_consumer,
            valid_topic=txns.topics.valid,
            raw_topic=txns.topics.raw,
            shards=[p for t, p in parts if t == txns.internal],
        )
        metrics.VALIDATOR_DEDUP_KEYS.set(len(txns.dedup))
        for tp in parts:
            txns.eof[tp] = False

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        txns = self.txns
        self._settle(consumer)
        parts = [(tp.topic, tp.partition) for tp in partitions]
        self._log("revoked", parts)
        txns.dedup.drop(p for t, p in parts if t == txns.internal)
        for tp in parts:
            txns.eof.pop(tp, None)

    def _log(self, what: str, parts: list[tuple[str, int]]) -> None:
        raw, internal = self.txns.topics.raw, self.txns.internal
        log.info(
            "%s topic=%s partitions=%s internal=%s shards=%s",
            what,
            raw,
            [p for t, p in parts if t == raw],
            internal,
            [p for t, p in parts if t == internal],
        )

    def _settle(self, consumer: Consumer) -> None:
        """Partitions never move with a commit in flight; if it fails, what this
        ``consume`` call returns is dropped too (and read again)."""
        txns = self.txns
        if txns.in_flight is not None and not txns.settle(consumer, []):
            txns.discard = True

    def _side_consumer(self) -> Consumer:
        txns = self.txns
        return clients.consumer(
            txns.kafka, f"{txns.settings.group_id}-dedup-rebuild", **{"enable.partition.eof": False}
        )
