"""The validator's topic errors: one missing-topic error (the base's), with what it
names, and the internal topic's partition-count mismatch as its own condition."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kappa.exceptions import TopicMissingError
from streams.validate.exceptions import PartitionCountMismatchError
from streams.validate.reading import partitions_of


class _Metadata:
    def __init__(self, topics: dict[str, list[int]]) -> None:
        self.topics = {
            t: SimpleNamespace(error=None, partitions={p: None for p in parts})
            for t, parts in topics.items()
        }

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return self


def test_partitions_of_a_topic() -> None:
    assert partitions_of(_Metadata({"cdr.dlq": [2, 0, 1]}), "cdr.dlq", "b:9092") == [0, 1, 2]  # type: ignore[arg-type]


def test_a_missing_topic_names_it_the_broker_and_the_command_that_creates_it() -> None:
    with pytest.raises(TopicMissingError) as caught:
        partitions_of(_Metadata({"cdr.raw": [0]}), "cdr.dlq", "b:9092")  # type: ignore[arg-type]
    assert caught.value.topics == ["cdr.dlq"]
    assert caught.value.bootstrap == "b:9092"
    assert "kappa stack up" in str(caught.value)


def test_partition_count_mismatch_names_both_counts() -> None:
    err = PartitionCountMismatchError("cdr.raw.by-call-id.g", 1, 3)
    assert (err.topic, err.have, err.want) == ("cdr.raw.by-call-id.g", 1, 3)
    assert "has 1 partitions, the valid topic 3" in str(err)
    assert not isinstance(err, TopicMissingError)
