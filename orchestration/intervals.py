"""The DAG's six-hour data intervals, and which one a run replays.

Pure functions on timezone-aware UTC ``datetime``s; nothing here imports Airflow.

A scheduled run and a backfill run (and a manual run triggered with a logical
date) carry their interval; a manual run triggered without a logical date, as
``airflow dags trigger kappa_replay`` makes it in Airflow 3, carries none, only
the time it was triggered (``run_after``). Such a run replays the last complete
interval before that time. The trigger's ``from`` parameter names the interval
explicitly and wins over both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestration.exceptions import NotOnScheduleError

INTERVAL = timedelta(hours=6)


def utc(t: datetime) -> datetime:
    """A plain timezone-aware UTC ``datetime`` (Airflow hands out pendulum ones)."""
    if t.tzinfo is None:
        msg = f"naive time {t!r}: the DAG works in UTC only"
        raise ValueError(msg)
    return datetime.fromtimestamp(t.timestamp(), UTC)


def floor_interval(t: datetime) -> datetime:
    """The start of the six-hour interval (00, 06, 12, 18 UTC) that holds ``t``."""
    t = t.astimezone(UTC)
    return t.replace(hour=t.hour - t.hour % 6, minute=0, second=0, microsecond=0)


def on_schedule(t: datetime) -> bool:
    return floor_interval(t) == t.astimezone(UTC)


def last_complete(now: datetime) -> tuple[datetime, datetime]:
    """The last six-hour interval that ended at or before ``now``."""
    end = floor_interval(now)
    return end - INTERVAL, end


def parse_from(value: object) -> datetime:
    """The ``from`` parameter: an ISO 8601 time with a zone (``Z`` allowed), on the schedule."""
    try:
        start = datetime.fromisoformat(str(value).strip())
    except ValueError as exc:
        msg = f"from={value!r} is not an ISO 8601 time such as 2026-03-01T06:00:00Z"
        raise NotOnScheduleError(msg) from exc
    if start.tzinfo is None:
        msg = f"from={value!r} has no time zone; write it in UTC, e.g. 2026-03-01T06:00:00Z"
        raise NotOnScheduleError(msg)
    if not on_schedule(start):
        msg = f"from={value!r} is not on the six-hour schedule (00, 06, 12, 18 UTC)"
        raise NotOnScheduleError(msg)
    return utc(start)


def of_run(
    start: datetime | None,
    end: datetime | None,
    *,
    run_after: datetime | None = None,
    requested: object = None,
) -> tuple[datetime, datetime]:
    """The interval a run replays.

    ``requested`` (the trigger's ``from``) when given; else the run's data
    interval ``[start, end)``; else, for a run without one, the last complete
    interval before ``run_after``.
    """
    if requested not in (None, ""):
        first = parse_from(requested)
        return first, first + INTERVAL
    if start is not None and end is not None:
        return utc(start), utc(end)
    if run_after is None:
        msg = "the run has neither a data interval nor a trigger time"
        raise NotOnScheduleError(msg)
    return last_complete(utc(run_after))
