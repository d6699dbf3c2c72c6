"""What the replay DAG's tasks call: thin functions into ``replay.api``.

Each reads its settings once, takes the interval as UTC ``datetime``s
(``intervals.of_run`` says which one a run replays), calls the replay and returns
small JSON-able dicts for XCom. Nothing here imports Airflow, so each is usable
(and tested) on its own. Only ``replay`` starts Spark; ``verify`` and ``metrics``
read a local output with plain file reads and count the topic with the Kafka client.
"""

# Imports inside functions: the replay (Spark) is imported when a task runs, not at DAG parse
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kappa.settings import AirflowSettings, ReplaySettings, StackSettings
from orchestration import runmetrics
from orchestration.intervals import utc

__all__ = ["interval_closed", "metrics", "replay", "task_failed", "utc", "verify"]

log = logging.getLogger(__name__)


def lateness_margin(settings: AirflowSettings | None = None) -> timedelta:
    """How long after an interval's end its records may still arrive."""
    settings = settings or AirflowSettings()
    if settings.lateness_margin_s is not None:
        return timedelta(seconds=settings.lateness_margin_s)
    return timedelta(seconds=ReplaySettings().lateness_margin_s)


@contextlib.contextmanager
def spark_master(settings: AirflowSettings | None = None) -> Iterator[None]:
    """Point the replay at ``KAPPA_AIRFLOW_SPARK_MASTER`` while a task calls it.

    The replay reads its own settings (``KAPPA_REPLAY_MASTER``); an explicit
    replay setting wins. A task is a process of its own, so this is its entry point.
    """
    settings = settings or AirflowSettings()
    key = "KAPPA_REPLAY_MASTER"
    if not settings.spark_master or os.environ.get(key):
        yield
        return
    os.environ[key] = settings.spark_master
    try:
        yield
    finally:
        os.environ.pop(key, None)


def interval_closed(
    end: datetime, *, now: datetime | None = None, margin: timedelta | None = None
) -> bool:
    """True once the interval's end plus the lateness margin has passed."""
    end = utc(end)
    margin = lateness_margin() if margin is None else margin
    now = now or datetime.now(UTC)
    closed = now >= end + margin
    log.info(
        "interval closed=%s end=%s margin_s=%d opens_in_s=%.0f",
        closed,
        end.isoformat(),
        margin.total_seconds(),
        max(0.0, (end + margin - now).total_seconds()),
    )
    return closed


def replay(start: datetime, end: datetime, output: str | None = None) -> dict[str, Any]:
    """Replay ``[start, end)``; returns a summary of its manifest."""
    from replay import api

    start, end = utc(start), utc(end)
    began = time.monotonic()
    with spark_master():
        manifest = api.replay_interval(start, end, output)
    seconds = round(time.monotonic() - began, 3)
    full = manifest.to_dict()
    keys = ("run_id", "range", "summary", "path")
    summary: dict[str, Any] = {k: full[k] for k in keys if k in full}
    summary.update(start=start.isoformat(), end=end.isoformat(), seconds=seconds)
    log.info(
        "replayed start=%s end=%s seconds=%.1f run_id=%s path=%s",
        start.isoformat(),
        end.isoformat(),
        seconds,
        summary.get("run_id"),
        summary.get("path"),
    )
    return summary


def verify(start: datetime, end: datetime, output: str | None = None) -> dict[str, Any]:
    """Check the interval's output against the log; raises ``ReplayVerificationError``."""
    from replay import api

    start, end = utc(start), utc(end)
    with spark_master():  # only an hdfs:// output needs Spark here
        result = api.verify_interval(start, end, output)
    log.info("verified start=%s end=%s", start.isoformat(), end.isoformat())
    return result.to_dict()


def metrics(
    start: datetime,
    end: datetime,
    output: str | None = None,
    *,
    replay_seconds: float | None = None,
    settings: AirflowSettings | None = None,
) -> dict[str, Any]:
    """The interval's figures: logged, and written for Prometheus."""
    from replay import api

    settings = settings or AirflowSettings()
    start, end = utc(start), utc(end)
    with spark_master(settings):  # only an hdfs:// output needs Spark here
        figures = api.interval_metrics(start, end, output)
    run = runmetrics.RunFigures(
        start=start,
        end=end,
        records=figures.records,
        customers=figures.customers,
        towers=figures.towers,
        revenue=figures.revenue,
        replay_seconds=replay_seconds,
    )
    path = runmetrics.record_success(settings.metrics_path(StackSettings().state_dir), run)
    log.info(
        "interval metrics start=%s end=%s records=%d customers=%d towers=%d revenue=%.2f file=%s",
        start.isoformat(),
        end.isoformat(),
        run.records,
        run.customers,
        run.towers,
        run.revenue,
        path,
    )
    return {
        "records": run.records,
        "customers": run.customers,
        "towers": run.towers,
        "revenue": run.revenue,
        "file": str(path),
    }


def task_failed(task_id: str, settings: AirflowSettings | None = None) -> Path:
    """Count a task that failed after its retries (the DAG's failure callback)."""
    settings = settings or AirflowSettings()
    return runmetrics.record_failure(settings.metrics_path(StackSettings().state_dir), task_id)
