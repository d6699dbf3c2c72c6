"""Planning checks, without a broker: refusals and the offsets Spark is given."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from replay.exceptions import RangeExpiredError, RangeNotClosedError, ReversedRangeError
from replay.plan import (
    PartitionSpan,
    ReplayPlan,
    check_deleted,
    check_range,
    check_retention,
    iso,
    range_id,
)

T1 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
T2 = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
MARGIN = timedelta(minutes=15)
LATER = datetime(2026, 2, 1, tzinfo=UTC)


def test_a_closed_range_passes() -> None:
    check_range(T1, T2, MARGIN, now=T2 + MARGIN)


def test_reversed_range_is_refused() -> None:
    with pytest.raises(ReversedRangeError, match=r"is reversed: --to must be after --from"):
        check_range(T2, T1, MARGIN, now=LATER)


def test_empty_range_is_refused() -> None:
    with pytest.raises(ReversedRangeError, match=r"is empty"):
        check_range(T1, T1, MARGIN, now=LATER)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ReversedRangeError, match="no time zone"):
        check_range(T1.replace(tzinfo=None), T2, MARGIN, now=LATER)


def test_range_within_the_margin_of_now_is_refused() -> None:
    now = T2 + MARGIN - timedelta(seconds=1)
    with pytest.raises(RangeNotClosedError) as err:
        check_range(T1, T2, MARGIN, now=now)
    text = str(err.value)
    assert "is not closed yet" in text
    assert "15-minute lateness margin" in text
    assert "replay it after 2026-01-01T06:15:00Z" in text


def test_range_older_than_retention_is_refused() -> None:
    one_day = 24 * 3600 * 1000
    check_retention(T1, MARGIN, T1 + timedelta(hours=23), one_day, "cdr.valid")
    check_retention(T1, MARGIN, LATER, -1, "cdr.valid")  # -1: kept forever
    with pytest.raises(RangeExpiredError, match=r"older than what cdr.valid keeps: retention.ms"):
        check_retention(T1, MARGIN, T1 + timedelta(hours=24), one_day, "cdr.valid")


def test_deleted_records_that_may_be_in_range_are_refused() -> None:
    # Nothing deleted, or the first record at/after the range start follows kept records.
    check_deleted("t", 0, low=0, high=10, first_at_start=0, start=T1, margin=MARGIN)
    check_deleted("t", 0, low=5, high=10, first_at_start=7, start=T1, margin=MARGIN)
    with pytest.raises(RangeExpiredError, match="partition 0 no longer holds its records before"):
        check_deleted("t", 0, low=5, high=10, first_at_start=5, start=T1, margin=MARGIN)
    with pytest.raises(RangeExpiredError):
        check_deleted("t", 0, low=10, high=10, first_at_start=-1, start=T1, margin=MARGIN)


def test_names_and_spark_offsets() -> None:
    assert iso(T1) == "2026-01-01T00:00:00Z"
    assert range_id(T1, T2) == "20260101T000000Z_20260101T060000Z"
    plan = ReplayPlan("cdr.valid", T1, T2, MARGIN, (PartitionSpan(0, 3, 9), PartitionSpan(1, 4, 4)))
    assert json.loads(plan.starting_offsets_json()) == {"cdr.valid": {"0": 3, "1": 4}}
    assert json.loads(plan.ending_offsets_json()) == {"cdr.valid": {"0": 9, "1": 4}}
    assert json.loads(plan.assign_json()) == {"cdr.valid": [0, 1]}
    assert plan.offsets_to_read == 6
    assert plan.to_dict()["partitions"][1] == {"partition": 1, "start_offset": 4, "end_offset": 4}


def test_a_broker_gone_quiet_while_planning_is_unreachable() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from kappa.exceptions import EXIT_UNREACHABLE, ServiceUnreachableError
    from kappa.settings import KafkaSettings
    from replay.plan import _planning_error

    kafka = KafkaSettings(bootstrap="127.0.0.1:1")
    err = _planning_error(kafka, "cdr.valid", KafkaException(KafkaError(KafkaError._TIMED_OUT)))
    assert isinstance(err, ServiceUnreachableError)
    assert err.exit_code == EXIT_UNREACHABLE
    assert err.address == "127.0.0.1:1"


def test_another_kafka_error_while_planning_names_the_topic() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from kappa.settings import KafkaSettings
    from replay.exceptions import PlanningError
    from replay.plan import _planning_error

    kafka = KafkaSettings(bootstrap="127.0.0.1:1")
    cause = KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE))
    err = _planning_error(kafka, "cdr.valid", cause)
    assert isinstance(err, PlanningError)
    assert (err.topic, err.bootstrap) == ("cdr.valid", "127.0.0.1:1")
    assert str(err).startswith("could not plan the replay of cdr.valid at 127.0.0.1:1: ")
