"""One micro-batch's Kafka transaction, pipelined by one batch: judged, produced with
its offsets, committed on a worker thread while the next batch is judged, settled
(the dedup state learns its call_ids) or aborted and rewound.

A wedged producer is replaced. librdkafka (up to 2.14 at least, issues #5456 and
#5511) can block ``send_offsets_to_transaction`` past its timeout, for good, when the
group coordinator's broker left the cluster (killed: it drops out of the metadata)
while the client still has it cached. So the broker calls of a transaction run on a
daemon thread and are waited for with a deadline; past it, the producer is set aside
(its call may never return) and a new one with the same ``transactional.id`` takes
over: its ``init_transactions`` fences the old one and aborts the open transaction,
and the batch is read again. Exactly once holds: nothing of the aborted transaction
is visible to read_committed readers, and its offsets were not committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings, ValidatorSettings
from monitoring import metrics
from schemas.wire import WireDecoder
from streams.validate import repartition
from streams.validate.connections import INIT_TIMEOUT_S, suite_config, transactional_producer
from streams.validate.dedup import DedupState
from streams.validate.encoding import encode_routed, produce_all
from streams.validate.exceptions import ValidatorError, ValidatorFencedError
from streams.validate.outputs import Outputs
from streams.validate.routing import RawRecord, Routed, validate
from streams.validate.stats import RunStats
from streams.validate.suite import CdrSuite

log = logging.getLogger(__name__)

T = TypeVar("T")

COMMIT_TIMEOUT_S = 120.0
OFFSETS_TIMEOUT_S = 60.0
ABORT_TIMEOUT_S = 60.0
# How long past its own timeout a broker call may take before its producer counts as
# wedged (librdkafka answers a timeout within a second or two when it honours it).
GRACE_S = 15.0
REPLACE_ATTEMPTS = 5


def in_background(name: str, call: Callable[..., T], *args: Any) -> Future[T]:
    """``call(*args)`` on a daemon thread of its own: a call that never returns holds
    neither a pool nor the interpreter's exit."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class WedgedProducerError(Exception):
    """A broker call of the transactional producer outlived its timeout by ``GRACE_S``."""


def bounded(name: str, call: Callable[..., T], timeout_s: float, *args: Any) -> T:
    """``call(*args, timeout_s)``, a broker call of the producer, in the background;
    ``WedgedProducerError`` if it has not returned ``GRACE_S`` after its own timeout."""
    try:
        return in_background(name, call, *args, timeout_s).result(timeout_s + GRACE_S)
    except FutureTimeout:
        msg = f"{name}: no answer in {timeout_s + GRACE_S:.0f} s"
        raise WedgedProducerError(msg) from None


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
        self.wedged: list[Producer] = []  # replaced producers, kept: a call may still hold one

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

    def send(self, consumer: Consumer, batch: list[RawRecord], judged: Judged) -> bool:
        """Begin the batch's transaction, produce its records and offsets, and start its
        commit on the worker thread. False: aborted and rewound."""
        assert self.in_flight is None
        producer = self.producer
        assert producer is not None
        t0 = time.perf_counter()
        routed = judged.routed
        try:
            self._transact(producer, consumer, batch, routed, judged.judged_at)
        except KafkaException as exc:
            self._failed(exc, producer, consumer, batch)
            return False
        except WedgedProducerError as exc:
            self._replace(exc, consumer, batch)
            return False
        commit = in_background("kappa-commit", producer.commit_transaction, COMMIT_TIMEOUT_S)
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
            flight.commit.result(COMMIT_TIMEOUT_S + GRACE_S)
        except KafkaException as exc:
            self.in_flight = None
            self._failed(exc, producer, consumer, flight.batch + held)
            return False
        except FutureTimeout:
            self.in_flight = None
            wedged = WedgedProducerError(
                f"commit_transaction: no answer in {COMMIT_TIMEOUT_S + GRACE_S:.0f} s"
            )
            self._replace(wedged, consumer, flight.batch + held)
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
                flight.commit.result(COMMIT_TIMEOUT_S + GRACE_S)
            except (KafkaException, FutureTimeout) as exc:
                log.warning("last commit failed error=%r", exc)

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
        try:
            _abort(producer)
        except WedgedProducerError as wedged:
            self._replace(wedged, consumer, batch)
            return
        rewind(consumer, batch)
        self.stats.aborts += 1
        metrics.VALIDATOR_ABORTS.inc()

    def _replace(
        self, exc: WedgedProducerError, consumer: Consumer, batch: list[RawRecord]
    ) -> None:
        """Set the wedged producer aside and start a new one with the same
        transactional.id (it fences the old one and aborts its transaction); rewind."""
        old = self.producer
        assert old is not None
        log.warning(
            "transactional producer wedged (%s); replacing it, records=%d rewound", exc, len(batch)
        )
        self.wedged.append(old)
        self.producer = None
        for attempt in range(1, REPLACE_ATTEMPTS + 1):
            try:
                self.producer = in_background(
                    "init_transactions",
                    transactional_producer,
                    self.kafka,
                    self.settings,
                    self.settings.transactional_id,
                ).result(INIT_TIMEOUT_S + GRACE_S)
                break
            except (KafkaException, FutureTimeout) as err:
                if attempt == REPLACE_ATTEMPTS:
                    msg = (
                        f"could not start a transactional producer in place of a wedged one "
                        f"({REPLACE_ATTEMPTS} tries): {err!r}; is the cluster reachable?"
                    )
                    raise ValidatorError(msg) from err
                log.warning("init_transactions failed error=%s attempt=%d", err, attempt)
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
        bounded(
            "send_offsets_to_transaction",
            producer.send_offsets_to_transaction,
            OFFSETS_TIMEOUT_S,
            offsets,
            consumer.consumer_group_metadata(),
        )


def _abort(producer: Producer) -> None:
    try:
        bounded("abort_transaction", producer.abort_transaction, ABORT_TIMEOUT_S)
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
