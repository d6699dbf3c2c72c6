"""Planning against the broker: offsets by message timestamp, transaction markers included."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from confluent_kafka import TopicPartition

from kappa import clients
from replay.plan import plan
from schemas import SchemaName, WireEncoder, parsed_schema
from tests.harness.stack import StackHandle
from tests.replay.conftest import DAY, CdrTopic, cdr, minutes
from tests.streams.aggregate.dataset import STEPS, T0, at, produce_step

pytestmark = pytest.mark.integration
MARGIN = timedelta(minutes=15)


def test_offsets_hold_the_range_and_its_margins(
    cdr_topic: Callable[..., CdrTopic], stack: StackHandle
) -> None:
    t = cdr_topic(partitions=1)
    t.write(cdr(i, DAY + minutes(i)) for i in range(120))  # one a minute, in order
    p = plan(stack.kafka, t.name, DAY + minutes(30), DAY + minutes(60), MARGIN)
    (span,) = p.spans
    assert (span.start, span.end) == (15, 75)  # [00:15, 01:15): from - 15 min, to + 15 min


def test_a_transaction_marker_does_not_end_the_range_early(
    cdr_topic: Callable[..., CdrTopic], stack: StackHandle
) -> None:
    # Each step is a transaction: its commit marker carries today's wall-clock time,
    # later than every event time of the range.
    t = cdr_topic(partitions=1)
    enc = WireEncoder(parsed_schema(SchemaName.CDR), t.schema_id)
    for step in STEPS:
        produce_step(stack.kafka, t.name, step, [enc])
    consumer = clients.consumer(stack.kafka, group_id="t-plan-marks")
    _, high = consumer.get_watermark_offsets(TopicPartition(t.name, 0), timeout=10)
    consumer.close()
    p = plan(stack.kafka, t.name, T0, at(60), MARGIN)
    (span,) = p.spans
    assert span.start == 0
    assert span.end == high  # no record at/after 11:15: the whole partition
