"""One micro-batch's Kafka transaction, pipelined by one batch: judged, produced with
its offsets, committed on a worker thread while the next batch is judged, settled
(the dedup state learns its call_ids) or aborted and rewound."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings, ValidatorSettings
from monitoring import metrics
from schemas.wire import WireDecoder
from streams.validate import repartition
from streams.validate.connections import suite_config
from streams.validate.dedup import DedupState
from streams.validate.encoding import encode_routed, produce_all
from streams.validate.exceptions import ValidatorFencedError
from streams.validate.outputs import Outputs
from streams.validate.routing import RawRecord, Routed, validate
from streams.validate.stats import RunStats
from streams.validate.suite import CdrSuite

log = logging.getLogger(__name__)


@dataclass
class InFlight:
    """A batch whose transaction is committing on the worker thread."""

    batch: list[RawRecord]
    routed: Routed
    commit: Future[None]
    started: float  # perf_counter when its judging began
    txn: float  # seconds the loop spent in begin/produce/send_offsets
    taken: dict[tuple[int, str], int]  # its accepted call_ids, provisionally


@dataclass(frozen=True)
class Judged:
    """A batch judged: what it routes where, and when it was judged (ms)."""

    routed: Routed
    judged_at: int
    started: float  # perf_counter when its judging began


class Transactions:
    """The validator's state across batches: its decoder, suite and dedup state, the
    end-of-partition flags, the totals, and the batch whose commit is in flight."""

    def __init__(
        self,
        kafka: KafkaSettings,
        registry: RegistrySettings,
        topics: TopicSettings,
        settings: ValidatorSettings,
    ) -> None:
        self.kafka, self.topics, self.settings = kafka, topics, settings
        client = clients.registry(registry)
        self.outputs = Outputs.register(client, topics)
        self.decoder = WireDecoder(client, millis=True, spans=True)
        self.suite = CdrSuite(suite_config(settings))
        self.dedup = DedupState(int(settings.dedup_horizon_s * 1000))
        self.internal = repartition.topic_name(topics.raw, settings.group_id)
        self.eof: dict[tuple[str, int], bool] = {}
        self.stats = RunStats()
        self.producer: Producer | None = None
        self.on_batch: Callable[[RunStats], None] | None = None
        self.in_flight: InFlight | None = None
        self.discard = False  # a commit failed inside a rebalance: drop what consume returns
        self._commits = ThreadPoolExecutor(1, thread_name_prefix="kappa-commit")

    def seen(self, partition: int, call_id: str, ts_ms: int | None = None) -> bool:
        """Taken by a committed batch (the dedup state) or by the one committing."""
        flight = self.in_flight
        if flight is not None:
            first = flight.taken.get((partition, call_id))
            if first is not None and (ts_ms is None or abs(ts_ms - first) <= self.dedup.horizon_ms):
                return True
        return self.dedup.seen(partition, call_id, ts_ms)

    def judge(self, batch: list[RawRecord], carried: list[RawRecord]) -> Judged:
        """Forward the raw records of ``batch``; judge ``carried``, the raw records its
        internal-topic messages carry."""
        started = time.perf_counter()
        judged_at = time.time_ns() // 1_000_000
        routed = validate(
            carried,
            decode=self.decoder.decode,
            suite=self.suite,
            seen=self.seen,
            judged_at_ms=judged_at,
        )
        raw, decode = self.topics.raw, self.decoder.decode
        routed.forward = [repartition.forward(decode, r) for r in batch if r.topic == raw]
        return Judged(routed, judged_at, started)

    def send(
        self, producer: Producer, consumer: Consumer, batch: list[RawRecord], judged: Judged
    ) -> bool:
        """Begin the batch's transaction, produce its records and offsets, and start its
        commit on the worker thread. False: aborted and rewound."""
        assert self.in_flight is None
        t0 = time.perf_counter()
        routed = judged.routed
        try:
            self._transact(producer, consumer, batch, routed, judged.judged_at)
        except KafkaException as exc:
            self._failed(exc, producer, consumer, batch)
            return False
        commit = self._commits.submit(producer.commit_transaction, 120)
        taken = {(p, call_id): ts for p, call_id, ts in routed.accepted}
        txn = time.perf_counter() - t0
        self.in_flight = InFlight(batch, routed, commit, judged.started, txn, taken)
        return True

    def settle(self, consumer: Consumer, held: list[RawRecord]) -> bool:
        """Wait for the commit in flight. Committed: the dedup state learns its call_ids
        and the batch is counted. Failed: aborted, and the consumer rewound to its first
        offsets (and those of ``held``, consumed after it): False."""
        flight = self.in_flight
        if flight is None:
            return True
        producer = self.producer
        assert producer is not None
        t0 = time.perf_counter()
        try:
            flight.commit.result()
        except KafkaException as exc:
            self.in_flight = None
            self._failed(exc, producer, consumer, flight.batch + held)
            return False
        self.in_flight = None
        now = time.perf_counter()
        self.dedup.add_many(flight.routed.accepted)
        self.stats.account(flight.batch, flight.routed, flight.txn + now - t0, now - flight.started)
        if self.on_batch is not None:
            self.on_batch(self.stats)
        return True

    def close(self) -> None:
        """Let a commit in flight finish (its outcome no longer matters here)."""
        flight, self.in_flight = self.in_flight, None
        if flight is not None:
            try:
                flight.commit.result()
            except KafkaException as exc:
                log.warning("last commit failed error=%s", exc)
        self._commits.shutdown(wait=True)

    def _failed(
        self, exc: KafkaException, producer: Producer, consumer: Consumer, batch: list[RawRecord]
    ) -> None:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is not None and err.fatal():
            msg = (
                f"transaction failed fatally: {err.str()}; another instance may own "
                "this transactional.id"
            )
            raise ValidatorFencedError(msg) from exc
        log.warning("transaction aborted error=%s records=%d; rewinding", exc, len(batch))
        _abort(producer)
        rewind(consumer, batch)
        self.stats.aborts += 1
        metrics.VALIDATOR_ABORTS.inc()

    def _transact(
        self,
        producer: Producer,
        consumer: Consumer,
        batch: list[RawRecord],
        routed: Routed,
        judged_at: int,
    ) -> None:
        out = self.outputs
        encoded = encode_routed(out, routed, self.suite.version, judged_at)
        producer.begin_transaction()
        produce_all(producer, self.internal, routed.forward)
        produce_all(producer, out.valid_topic, encoded.valid)
        produce_all(producer, out.dlq_topic, encoded.dead)
        last: dict[tuple[str, int], int] = {}
        for r in batch:
            last[(r.topic, r.partition)] = r.offset
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 60)


def _abort(producer: Producer) -> None:
    try:
        producer.abort_transaction(60)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.fatal():
            msg = f"could not abort the transaction: {err.str()}"
            raise ValidatorFencedError(msg) from exc
        log.warning("abort failed error=%s", exc)


def rewind(consumer: Consumer, batch: list[RawRecord]) -> None:
    """Seek each assigned partition of ``batch`` back to its first offset in it."""
    first: dict[tuple[str, int], int] = {}
    for r in batch:
        first.setdefault((r.topic, r.partition), r.offset)
    assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    for (t, p), o in first.items():
        if (t, p) in assigned:
            consumer.seek(TopicPartition(t, p, o))
