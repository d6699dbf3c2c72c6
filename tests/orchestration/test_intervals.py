"""Which interval a run replays: its own, the trigger's ``from``, or the last complete one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.exceptions import NotOnScheduleError
from orchestration.intervals import INTERVAL, last_complete, of_run, on_schedule, parse_from

T0 = datetime(2026, 3, 2, 0, tzinfo=UTC)


def test_a_run_with_a_data_interval_replays_it() -> None:
    assert of_run(T0, T0 + INTERVAL, run_after=T0 + 3 * INTERVAL) == (T0, T0 + INTERVAL)


def test_a_manual_run_without_logical_date_replays_the_last_complete_interval() -> None:
    # `airflow dags trigger kappa_replay` in Airflow 3: no logical date, no data interval.
    got = of_run(None, None, run_after=T0 + timedelta(hours=14, minutes=30))
    assert got == (T0 + INTERVAL, T0 + 2 * INTERVAL)
    assert of_run(None, None, run_after=T0 + INTERVAL) == (T0, T0 + INTERVAL)  # just ended


def test_the_from_parameter_wins() -> None:
    want = (T0 - INTERVAL, T0)
    assert of_run(None, None, run_after=T0 + INTERVAL, requested="2026-03-01T18:00:00Z") == want
    assert of_run(T0, T0 + INTERVAL, requested="2026-03-01T18:00:00+00:00") == want
    assert of_run(T0, T0 + INTERVAL, requested="") == (T0, T0 + INTERVAL)


@pytest.mark.parametrize(
    "value", ["2026-03-01T19:00:00Z", "2026-03-01T18:00:00", "yesterday", "2026-03-01T18:00Z+1"]
)
def test_a_bad_from_is_refused_with_a_reason(value: str) -> None:
    with pytest.raises(NotOnScheduleError, match="from="):
        parse_from(value)


def test_a_run_with_nothing_to_go_by_is_refused() -> None:
    with pytest.raises(NotOnScheduleError):
        of_run(None, None)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
)
def test_the_last_complete_interval_is_on_schedule_and_ended(now: datetime) -> None:
    start, end = last_complete(now)
    assert on_schedule(start)
    assert on_schedule(end)
    assert end - start == INTERVAL
    assert end <= now < end + INTERVAL
