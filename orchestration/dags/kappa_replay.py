"""kappa_replay: every six hours, replay the closed data interval of cdr.valid to Parquet.

    wait_closed ─► replay ─► verify ─► metrics

Each run owns one data interval ``[data_interval_start, data_interval_end)``, six
hours long (``CronDataIntervalTimetable``; a plain cron schedule in Airflow 3 gives
an empty interval). ``wait_closed`` reschedules itself until the interval's end
plus the replay's lateness margin has passed; ``replay`` writes the interval's
Parquet and manifest (rerunning replaces them); ``verify`` checks the manifest
against the log and fails the run, without retrying, when they disagree;
``metrics`` logs the interval's figures and writes them for Prometheus.

catchup is on: every interval since ``start_date`` is replayed, so scheduler
downtime leaves no gap (the runs queue, one at a time). ``start_date`` comes from
``KAPPA_AIRFLOW_START_DATE``, which ``kappa airflow up`` pins at its first start;
older intervals are an explicit ``airflow backfill create``.

The run configuration ``{"output": "hdfs://..."}`` (or the ``output`` param in
the UI) overrides where the replay writes. Parsing this file imports only Airflow
and the settings; the tasks import the replay when they run.
"""

# Imports inside functions: tasks import their callables when they run: DAG parsing stays fast
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from kappa.settings import AirflowSettings

DAG_ID = "kappa_replay"
SCHEDULE = "0 */6 * * *"
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def _failed(context: Any) -> None:
    """Count a task that failed for good, for the run metrics."""
    from orchestration import callables

    callables.task_failed(context["ti"].task_id)


def _output(params: Any) -> str | None:
    value = (params or {}).get("output")
    return str(value) if value else None


def build() -> Any:
    settings = AirflowSettings()

    @dag(
        dag_id=DAG_ID,
        schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
        start_date=settings.start_date or DEFAULT_START,
        catchup=True,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        default_args={
            "owner": "kappa",
            "retries": 2,
            "retry_delay": timedelta(minutes=5),
            "on_failure_callback": _failed,
        },
        params={
            "output": Param(
                None,
                type=["null", "string"],
                description="output root URL (default: KAPPA_REPLAY_OUTPUT)",
            ),
        },
        tags=["kappa", "replay"],
        doc_md=__doc__,
    )
    def kappa_replay() -> None:
        @task.sensor(
            task_id="wait_closed",
            mode="reschedule",
            poke_interval=settings.poke_interval_s,
            timeout=settings.wait_timeout_s,
        )
        def wait_closed(data_interval_end: Any = None) -> bool:
            from orchestration import callables

            return callables.interval_closed(data_interval_end)

        @task(task_id="replay")
        def replay(
            data_interval_start: Any = None, data_interval_end: Any = None, params: Any = None
        ) -> dict[str, Any]:
            from orchestration import callables

            return callables.replay(data_interval_start, data_interval_end, _output(params))

        @task(task_id="verify")
        def verify(
            data_interval_start: Any = None, data_interval_end: Any = None, params: Any = None
        ) -> dict[str, Any]:
            from airflow.exceptions import AirflowFailException

            from orchestration import callables
            from replay.exceptions import ReplayVerificationError

            try:
                result = callables.verify(data_interval_start, data_interval_end, _output(params))
            except ReplayVerificationError as exc:
                # The output disagrees with the log: retrying the check cannot fix it.
                msg = f"verification failed: {exc}"
                raise AirflowFailException(msg) from exc
            return result

        @task(task_id="metrics")
        def metrics(
            data_interval_start: Any = None,
            data_interval_end: Any = None,
            params: Any = None,
            ti: Any = None,
        ) -> dict[str, Any]:
            from orchestration import callables

            replayed = ti.xcom_pull(task_ids="replay") if ti is not None else None
            seconds = replayed.get("seconds") if isinstance(replayed, dict) else None
            return callables.metrics(
                data_interval_start, data_interval_end, _output(params), replay_seconds=seconds
            )

        # Each task reads its interval from the run, not from upstream XComs, so that
        # any one of them can be cleared and rerun alone.
        wait_closed() >> replay() >> verify() >> metrics()

    return kappa_replay()


kappa_replay_dag = build()
