"""A wedged transactional producer replaced, against the real broker: the new one, with
the same transactional.id, fences the old one, whose open transaction never becomes
visible, and carries on committing (``Transactions._replace``, what the validator does
when librdkafka leaves a broker call hanging past its timeout)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaException

from kappa.settings import TopicSettings, ValidatorSettings
from streams.validate.connections import group_consumer, transactional_producer
from streams.validate.transaction import Transactions, WedgedProducerError
from tests.fixtures.validate import read_all

pytestmark = pytest.mark.integration


def test_a_replaced_producer_is_fenced_and_its_transaction_never_seen(
    stack: Any, validator_topics: TopicSettings, validator_settings: ValidatorSettings
) -> None:
    topics, settings = validator_topics, validator_settings
    txns = Transactions(stack.kafka, stack.registry, topics, settings)
    txns.producer = old = transactional_producer(stack.kafka, settings, settings.transactional_id)
    consumer = group_consumer(stack.kafka, settings)
    try:
        old.begin_transaction()
        old.produce(topics.valid, b"of the wedged producer", b"a", partition=0)
        assert old.flush(30) == 0

        txns._replace(WedgedProducerError("a call that never returned"), consumer, [])
        new = txns.producer
        assert new is not None
        assert new is not old
        assert txns.wedged == [old]
        assert txns.stats.aborts == 1

        new.begin_transaction()
        new.produce(topics.valid, b"of its replacement", b"b", partition=0)
        new.commit_transaction(30)
        with pytest.raises(KafkaException) as fenced:
            old.commit_transaction(30)
        assert fenced.value.args[0].fatal(), fenced.value
    finally:
        consumer.close()
    assert [m.value() for m in read_all(stack.kafka, topics.valid)] == [b"of its replacement"]
