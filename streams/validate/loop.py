"""The validator's consume loop: micro-batches consumed, judged and sent, until
stopped, idle or caught up; the periodic lag gauge and dedup eviction."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException

from monitoring import metrics
from streams.validate import repartition
from streams.validate.exceptions import ValidatorError
from streams.validate.routing import RawRecord
from streams.validate.stats import record_lag
from streams.validate.transaction import Transactions, rewind

log = logging.getLogger(__name__)

LAG_EVERY_S = 5.0
EVICT_EVERY_S = 30.0


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


@functools.cache
def _freeze_startup() -> None:
    """Once per process: the GX context and the rest of start-up move to the collector's
    permanent generation (never walked again; still freed by reference counting)."""
    gc.freeze()


@dataclass(frozen=True)
class Consumed:
    """One micro-batch as consumed, and the raw records its internal-topic messages carry."""

    batch: list[RawRecord] = field(default_factory=list)
    carried: list[RawRecord] = field(default_factory=list)


@dataclass(frozen=True)
class StopWhen:
    """When the loop ends besides ``stop``: idle for ``max_idle_s``, or caught up."""

    max_idle_s: float | None = None
    caught_up: bool = False


def loop(
    txns: Transactions,
    consumer: Consumer,
    stop: threading.Event,
    until: StopWhen,
) -> None:
    last_data = time.monotonic()
    next_lag = last_data + LAG_EVERY_S
    next_evict = last_data + EVICT_EVERY_S
    _freeze_startup()
    while not stop.is_set():
        with gc_paused():
            had_data = _step(txns, consumer)
        now = time.monotonic()
        if had_data:
            last_data = now
        elif _done(txns, consumer, until, now - last_data):
            return
        if now >= next_lag:
            record_lag(consumer, txns.internal)
            next_lag = now + LAG_EVERY_S
        if now >= next_evict:
            txns.dedup.evict()
            metrics.VALIDATOR_DEDUP_KEYS.set(len(txns.dedup))
            next_evict = now + EVICT_EVERY_S
    txns.settle(consumer, [])


def _step(txns: Transactions, consumer: Consumer) -> bool:
    """Consume one micro-batch, judge it and send it once the commit in flight is
    settled; whether anything was consumed."""
    got = consume(txns, consumer)
    if txns.discard:  # a commit failed in a rebalance callback of this consume
        txns.discard = False
        rewind(consumer, got.batch)
        got = Consumed()
    if not got.batch:
        txns.settle(consumer, [])
        return False
    judged = txns.judge(got.batch, got.carried)
    if txns.settle(consumer, got.batch):
        txns.send(consumer, got.batch, judged)
    return True


def _done(txns: Transactions, consumer: Consumer, until: StopWhen, idle_s: float) -> bool:
    """After an empty batch: caught up (if asked), or idle too long (if a limit is set)."""
    if until.caught_up and txns.eof and all(txns.eof.values()) and at_end(consumer):
        log.info("caught up: every assigned partition is at its end")
        return True
    if until.max_idle_s is not None and idle_s >= until.max_idle_s:
        log.info("idle for %.0f s; stopping", idle_s)
        return True
    return False


def consume(txns: Transactions, consumer: Consumer) -> Consumed:
    """One micro-batch: at most ``batch_size`` records, waiting at most ``batch_seconds``;
    and the raw records its internal-topic messages carry."""
    s = txns.settings
    msgs = consumer.consume(s.batch_size, s.batch_seconds)
    batch: list[RawRecord] = []
    carried: list[RawRecord] = []
    add = batch.append
    eof = txns.eof
    internal = txns.internal
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
    return Consumed(batch, carried)


def at_end(consumer: Consumer) -> bool:
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
