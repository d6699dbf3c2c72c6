"""A judged batch as Kafka messages, and producing them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Producer

from schemas import rules
from streams.validate.outputs import Message, Outputs
from streams.validate.routing import Dead, Routed
from streams.validate.suite import Failure


@dataclass(frozen=True)
class Encoded:
    """The messages of a routed batch for the valid topic and the dead-letter topic."""

    valid: list[Message]
    dead: list[Message]


def produce_all(producer: Producer, topic: str, messages: Sequence[Message]) -> None:
    send = producer.produce
    for value, key, ts, headers in messages:
        while True:
            try:
                send(topic, value, key, timestamp=ts, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)


def encode_routed(out: Outputs, routed: Routed, suite_version: str, judged_at: int) -> Encoded:
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
    return Encoded(valid, dead)
