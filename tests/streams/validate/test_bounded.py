"""Broker calls of the transactional producer with a deadline (``transaction.bounded``):
a call past its own timeout and the grace counts as a wedged producer, and the thread
left waiting holds nothing up."""

from __future__ import annotations

import threading
import time

import pytest

from streams.validate import transaction
from streams.validate.transaction import WedgedProducerError, bounded


def test_an_answer_within_the_timeout_is_returned() -> None:
    assert bounded("call", lambda x, timeout: (x, timeout), 5.0, "x") == ("x", 5.0)


def test_an_error_of_the_call_is_raised_as_it_is() -> None:
    def fail(timeout: float) -> None:
        raise KeyError(timeout)

    with pytest.raises(KeyError):
        bounded("call", fail, 1.0)


def test_no_answer_past_the_timeout_and_the_grace_is_a_wedged_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transaction, "GRACE_S", 0.2)
    never = threading.Event()

    def hang(timeout: float) -> None:  # a librdkafka call that ignores its timeout
        never.wait(60)

    started = time.monotonic()
    with pytest.raises(WedgedProducerError, match=r"send_offsets_to_transaction: no answer"):
        bounded("send_offsets_to_transaction", hang, 0.1)
    assert time.monotonic() - started < 5
    waiting = [t for t in threading.enumerate() if t.name == "send_offsets_to_transaction"]
    assert waiting
    assert all(t.daemon for t in waiting)  # the interpreter may exit past it
    never.set()
