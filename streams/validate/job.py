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
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings, ValidatorSettings
from monitoring import metrics
from schemas import rules
from schemas.wire import WireDecoder
from streams.validate import repartition
from streams.validate.dedup import DedupState, rebuild
from streams.validate.exceptions import TopicMissingError, ValidatorError, ValidatorFencedError
from streams.validate.outputs import Message, Outputs
from streams.validate.routing import Dead, RawRecord, Routed, validate
from streams.validate.suite import CdrSuite, Failure, SuiteConfig

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    batches: int = 0
    records_in: int = 0
    valid: int = 0
    dead: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    aborts: int = 0
    forwarded: int = 0
    gx_seconds: float = 0.0
    decode_seconds: float = 0.0
    txn_seconds: float = 0.0
    seconds: float = 0.0
    startup_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "records_in": self.records_in,
            "valid": self.valid,
            "dead_lettered": self.dead,
            "by_rule": dict(sorted(self.by_rule.items())),
            "aborts": self.aborts,
            "forwarded": self.forwarded,
            "gx_seconds": round(self.gx_seconds, 3),
            "decode_seconds": round(self.decode_seconds, 3),
            "transaction_seconds": round(self.txn_seconds, 3),
            "seconds": round(self.seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
        }


def suite_config(settings: ValidatorSettings) -> SuiteConfig:
    return SuiteConfig(
        version=settings.suite_version,
        future_tolerance_ms=int(settings.future_tolerance_s * 1000),
        disabled=frozenset(settings.disabled_rules),
    )


def transactional_producer(
    kafka: KafkaSettings, settings: ValidatorSettings, transactional_id: str
) -> Producer:
    producer = clients.producer(
        kafka,
        **{
            "transactional.id": transactional_id,
            "transaction.timeout.ms": settings.transaction_timeout_ms,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        },
    )
    producer.init_transactions(60)
    return producer


def consumer_tuning(settings: ValidatorSettings) -> dict[str, Any]:
    """librdkafka properties that keep a whole micro-batch prefetched: by default the
    consumer queue holds ~100k records per partition fetched 1 MB at a time, so a
    ``consume`` of a large batch would wait out ``batch_seconds`` for the rest."""
    return {
        "queued.min.messages": min(10_000_000, max(100_000, 2 * settings.batch_size)),
        "queued.max.messages.kbytes": 262_144,
        "max.partition.fetch.bytes": 8 * 1_048_576,
    }


def produce_all(producer: Producer, topic: str, messages: Sequence[Message]) -> None:
    send = producer.produce
    for value, key, ts, headers in messages:
        while True:
            try:
                send(topic, value, key, timestamp=ts, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)


def encode_routed(
    out: Outputs, routed: Routed, suite_version: str, judged_at: int
) -> tuple[list[Message], list[Message]]:
    """The Kafka messages of a routed batch. A record the strict Cdr cannot hold (a foreign
    writer schema with an out-of-range value) becomes a ``schema`` dead letter instead:
    input never stops the job."""
    valid: list[Message] = []
    failed: list[Dead] = []
    for v in routed.valid:
        try:
            valid.append(out.valid(v))
        except (ValueError, TypeError, OverflowError, KeyError) as exc:
            failure = Failure(rules.SCHEMA.name, None, f"not encodable as Cdr: {exc}"[:200])
            failed.append(Dead(v.source, (failure,), v.cdr.get("call_id"), v.schema_id))
    if failed:
        routed.valid = [v for v in routed.valid if v.source not in {d.source for d in failed}]
        gone = {d.call_id for d in failed}
        routed.accepted = [a for a in routed.accepted if a[1] not in gone]
        routed.dead.extend(failed)
    dead = [out.dead(d, suite_version, judged_at) for d in routed.dead]
    return valid, dead


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for one micro-batch. A batch allocates a few
    objects per record, all freed by reference counting once it is done; with the
    collector on, young-generation collections walk the batch's live records again and
    again (a third of the CPU time per record, measured). Cyclic garbage (GX leaves
    some per validation) is collected once the collector resumes."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class _InFlight:
    """A batch whose transaction is committing on the worker thread."""

    batch: list[RawRecord]
    routed: Routed
    commit: Future[None]
    started: float  # perf_counter when its judging began
    txn: float  # seconds the loop spent in begin/produce/send_offsets
    taken: dict[tuple[int, str], int]  # its accepted call_ids, provisionally


@functools.cache
def _freeze_startup() -> None:
    """Once per process: the GX context and the rest of start-up move to the collector's
    permanent generation (never walked again; still freed by reference counting)."""
    gc.freeze()


class _Job:
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
        self.in_flight: _InFlight | None = None
        self.discard = False  # a commit failed inside a rebalance: drop what consume returns
        self._commits = ThreadPoolExecutor(1, thread_name_prefix="kappa-commit")

    # -- partition assignment ------------------------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle_in_callback(consumer)
        parts = [(tp.topic, tp.partition) for tp in partitions]
        log.info(
            "assigned topic=%s partitions=%s internal=%s shards=%s",
            self.topics.raw,
            [p for t, p in parts if t == self.topics.raw],
            self.internal,
            [p for t, p in parts if t == self.internal],
        )
        rebuild(
            self.dedup,
            self._side_consumer,
            valid_topic=self.topics.valid,
            raw_topic=self.topics.raw,
            shards=[p for t, p in parts if t == self.internal],
        )
        metrics.VALIDATOR_DEDUP_KEYS.set(len(self.dedup))
        for tp in parts:
            self.eof[tp] = False

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle_in_callback(consumer)
        parts = [(tp.topic, tp.partition) for tp in partitions]
        log.info(
            "revoked topic=%s partitions=%s internal=%s shards=%s",
            self.topics.raw,
            [p for t, p in parts if t == self.topics.raw],
            self.internal,
            [p for t, p in parts if t == self.internal],
        )
        self.dedup.drop(p for t, p in parts if t == self.internal)
        for tp in parts:
            self.eof.pop(tp, None)

    def _settle_in_callback(self, consumer: Consumer) -> None:
        """Partitions never move with a commit in flight; if it fails, what this
        ``consume`` call returns is dropped too (and read again)."""
        if self.in_flight is not None and not self.settle(consumer, []):
            self.discard = True

    def _side_consumer(self) -> Consumer:
        return clients.consumer(
            self.kafka, f"{self.settings.group_id}-dedup-rebuild", **{"enable.partition.eof": False}
        )

    # -- one micro-batch -----------------------------------------------------------------

    def seen(self, partition: int, call_id: str, ts_ms: int | None = None) -> bool:
        """Taken by a committed batch (the dedup state) or by the one committing."""
        flight = self.in_flight
        if flight is not None:
            first = flight.taken.get((partition, call_id))
            if first is not None and (ts_ms is None or abs(ts_ms - first) <= self.dedup.horizon_ms):
                return True
        return self.dedup.seen(partition, call_id, ts_ms)

    def judge(self, batch: list[RawRecord], carried: list[RawRecord]) -> tuple[Routed, int]:
        """Forward the raw records of ``batch``; judge ``carried``, the raw records its
        internal-topic messages carry."""
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
        return routed, judged_at

    def send(
        self,
        producer: Producer,
        consumer: Consumer,
        batch: list[RawRecord],
        routed: Routed,
        *,
        judged_at: int,
        started: float,
    ) -> bool:
        """Begin the batch's transaction, produce its records and offsets, and start its
        commit on the worker thread. False: aborted and rewound."""
        assert self.in_flight is None
        t0 = time.perf_counter()
        try:
            self._transact(producer, consumer, batch, routed, judged_at)
        except KafkaException as exc:
            self._failed(exc, producer, consumer, batch)
            return False
        commit = self._commits.submit(producer.commit_transaction, 120)
        taken = {(p, call_id): ts for p, call_id, ts in routed.accepted}
        self.in_flight = _InFlight(batch, routed, commit, started, time.perf_counter() - t0, taken)
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
        self._account(flight.batch, flight.routed, flight.txn + now - t0, now - flight.started)
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
        self._abort(producer)
        self._rewind(consumer, batch)
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
        version = self.suite.version
        valid, dead = encode_routed(out, routed, version, judged_at)
        producer.begin_transaction()
        produce_all(producer, self.internal, routed.forward)
        produce_all(producer, out.valid_topic, valid)
        produce_all(producer, out.dlq_topic, dead)
        last: dict[tuple[str, int], int] = {}
        for r in batch:
            last[(r.topic, r.partition)] = r.offset
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 60)

    def _abort(self, producer: Producer) -> None:
        try:
            producer.abort_transaction(60)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                msg = f"could not abort the transaction: {err.str()}"
                raise ValidatorFencedError(msg) from exc
            log.warning("abort failed error=%s", exc)

    @staticmethod
    def _rewind(consumer: Consumer, batch: list[RawRecord]) -> None:
        first: dict[tuple[str, int], int] = {}
        for r in batch:
            first.setdefault((r.topic, r.partition), r.offset)
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for (t, p), o in first.items():
            if (t, p) in assigned:
                consumer.seek(TopicPartition(t, p, o))

    def _account(self, batch: list[RawRecord], routed: Routed, txn: float, total: float) -> None:
        s = self.stats
        judged = len(routed.valid) + len(routed.dead)
        s.batches += 1
        s.records_in += judged
        s.forwarded += len(routed.forward)
        s.valid += len(routed.valid)
        s.dead += len(routed.dead)
        s.gx_seconds += routed.gx_seconds
        s.decode_seconds += routed.decode_seconds
        s.txn_seconds += txn
        rules: Counter[str] = Counter()
        for d in routed.dead:
            rules.update(d.rules)
        s.by_rule.update(rules)
        metrics.VALIDATOR_RECORDS_IN.inc(judged)
        metrics.VALIDATOR_VALID.inc(len(routed.valid))
        for rule, n in rules.items():
            metrics.VALIDATOR_DEAD_LETTERED.labels(rule=rule).inc(n)
        metrics.VALIDATOR_BATCH_RECORDS.observe(len(batch))
        metrics.VALIDATOR_BATCH_SECONDS.observe(total)
        metrics.VALIDATOR_GX_SECONDS.observe(routed.gx_seconds)
        metrics.VALIDATOR_TRANSACTION_SECONDS.observe(txn)
        log.debug(
            "batch records=%d forwarded=%d valid=%d dead=%d gx=%.3f txn=%.3f",
            len(batch),
            len(routed.forward),
            len(routed.valid),
            len(routed.dead),
            routed.gx_seconds,
            txn,
        )


def _check_topics(admin_consumer: Consumer, topics: list[str]) -> int:
    """Check that ``topics`` exist; the partition count of the second (the valid topic)."""
    meta = admin_consumer.list_topics(timeout=30)
    missing = [t for t in topics if t not in meta.topics or meta.topics[t].error is not None]
    if missing:
        msg = f"topic(s) {', '.join(missing)} do not exist; create them (kappa stack up does)"
        raise TopicMissingError(msg)
    return len(meta.topics[topics[1]].partitions)


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
    job = _Job(kafka, registry, topics, settings)
    # Dynamic group membership: a static member (group.instance.id) is fenced fatally
    # by librdkafka when its session times out during a group coordinator failover
    # (a broker killed), which stopped the validator; a restarted instance now waits
    # for the old member's session to expire (session.timeout.ms) instead.
    consumer = clients.consumer(
        kafka,
        settings.group_id,
        **{
            "session.timeout.ms": settings.session_timeout_ms,
            "enable.partition.eof": True,
            "max.poll.interval.ms": 600_000,
            **consumer_tuning(settings),
        },
    )
    producer: Producer | None = None
    try:
        valid_partitions = _check_topics(consumer, [topics.raw, topics.valid, topics.dlq])
        repartition.ensure_topic(kafka, job.internal, valid_partitions)
        producer = transactional_producer(kafka, settings, settings.transactional_id)
        job.producer, job.on_batch = producer, on_batch
        consumer.subscribe(
            [topics.raw, job.internal],
            on_assign=job.on_assign,
            on_revoke=job.on_revoke,
            on_lost=job.on_revoke,
        )
        job.stats.startup_seconds = time.monotonic() - started
        log.info(
            "validator started raw=%s internal=%s valid=%s dlq=%s suite=%s transactional_id=%s",
            topics.raw,
            job.internal,
            topics.valid,
            topics.dlq,
            settings.suite_version,
            settings.transactional_id,
        )
        _loop(job, producer, consumer, stop, max_idle_s=max_idle_s, until_caught_up=until_caught_up)
    finally:
        job.close()
        job.stats.seconds = time.monotonic() - started
        consumer.close()
        if producer is not None:
            producer.flush(10)
    log.info("validator stopped %s", " ".join(f"{k}={v}" for k, v in job.stats.as_dict().items()))
    return job.stats


def _loop(
    job: _Job,
    producer: Producer,
    consumer: Consumer,
    stop: threading.Event,
    *,
    max_idle_s: float | None,
    until_caught_up: bool,
) -> None:
    last_data = time.monotonic()
    next_lag = last_data + 5.0
    next_evict = last_data + 30.0
    _freeze_startup()
    while not stop.is_set():
        with gc_paused():
            batch, carried = _consume(job, consumer)
            if job.discard:  # a commit failed in a rebalance callback of this consume
                job.discard = False
                job._rewind(consumer, batch)
                batch, carried = [], []
            if batch:
                started = time.perf_counter()
                routed, judged_at = job.judge(batch, carried)
                if job.settle(consumer, batch):
                    job.send(
                        producer, consumer, batch, routed, judged_at=judged_at, started=started
                    )
            else:
                job.settle(consumer, [])
        now = time.monotonic()
        if batch:
            last_data = now
        else:
            if until_caught_up and job.eof and all(job.eof.values()) and _at_end(consumer):
                log.info("caught up: every assigned partition is at its end")
                return
            if max_idle_s is not None and now - last_data >= max_idle_s:
                log.info("idle for %.0f s; stopping", now - last_data)
                return
        if now >= next_lag:
            _record_lag(consumer, job.internal)
            next_lag = now + 5.0
        if now >= next_evict:
            job.dedup.evict()
            metrics.VALIDATOR_DEDUP_KEYS.set(len(job.dedup))
            next_evict = now + 30.0
    job.settle(consumer, [])


def _consume(job: _Job, consumer: Consumer) -> tuple[list[RawRecord], list[RawRecord]]:
    """One micro-batch: at most ``batch_size`` records, waiting at most ``batch_seconds``;
    and the raw records its internal-topic messages carry."""
    s = job.settings
    msgs = consumer.consume(s.batch_size, s.batch_seconds)
    batch: list[RawRecord] = []
    carried: list[RawRecord] = []
    add = batch.append
    eof = job.eof
    internal = job.internal
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                eof[(m.topic(), m.partition())] = True  # type: ignore[index]
                continue
            if err.fatal():
                msg = f"consumer error: {err.str()}"
                raise ValidatorError(msg)
            log.warning("consumer error=%s", err.str())
            continue
        ts_type, ts = m.timestamp()
        topic, partition = m.topic(), m.partition()
        eof[(topic, partition)] = False  # type: ignore[index]
        record = RawRecord(
            topic,  # type: ignore[arg-type]
            partition,  # type: ignore[arg-type]
            m.offset(),  # type: ignore[arg-type]
            None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts,
            m.key(),
            m.value(),
        )
        add(record)
        if topic == internal:
            inner = repartition.unwrap(record, m.headers())
            if inner is not None:
                carried.append(inner)
    return batch, carried


def _at_end(consumer: Consumer) -> bool:
    """Every assigned partition read to its high watermark (a record forwarded by the
    last commit may not have been fetched yet when its partition reported its end)."""
    try:
        assigned = consumer.assignment()
        for tp, pos in zip(assigned, consumer.position(assigned), strict=True):
            low, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            if high > low and pos.offset < high:
                return False
    except KafkaException as exc:
        log.debug("end not checked error=%s", exc)
        return False
    return True


def _record_lag(consumer: Consumer, internal: str) -> None:
    try:
        assigned = [tp for tp in consumer.assignment() if tp.topic != internal]
        for tp, pos in zip(assigned, consumer.position(assigned), strict=True):
            _, high = consumer.get_watermark_offsets(tp, timeout=2, cached=True)
            lag = high - pos.offset if pos.offset >= 0 else 0
            metrics.VALIDATOR_CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, lag))
    except KafkaException as exc:
        log.debug("lag not measured error=%s", exc)
