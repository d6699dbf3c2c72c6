"""kappa_replay: every six hours, replay the closed data interval of cdr.valid to Parquet.

    wait_closed ─► replay ─► verify ─► metrics

Each run owns one data interval ``[start, start + 6 h)`` (``CronDataIntervalTimetable``;
a plain cron schedule in Airflow 3 gives an empty interval):

* a scheduled run, a backfill run, or a manual run triggered with a logical date
  replays its data interval (for a logical date T, the last complete interval
  before T);
* a manual run triggered without a logical date (``airflow dags trigger
  kappa_replay``, the UI's Trigger button) has no data interval in Airflow 3: it
  replays the last complete interval before the time it was triggered;
* the trigger's ``from`` parameter (``{"from": "2026-03-01T06:00:00Z"}``) names
  the interval to replay and wins over both.

``wait_closed`` reschedules itself until the interval's end plus the replay's
lateness margin has passed; ``replay`` writes the interval's Parquet and manifest
(rerunning replaces them); ``verify`` checks the manifest against the log and
fails the run, without retrying, when they disagree; ``metrics`` logs the
interval's figures and writes them for Prometheus. Only ``replay`` starts Spark.

``start_date`` comes from ``KAPPA_AIRFLOW_START_DATE``, which ``kappa airflow up``
pins at its first start; then catchup is on: every interval since that start is
replayed, so scheduler downtime leaves no gap. Without it, catchup is off (no
surprise year of runs); older intervals are an explicit backfill.

The ``output`` parameter (``{"output": "hdfs://..."}``) overrides where the
replay writes. Parsing this file imports only Airflow and the settings; the
tasks import the replay when they run.
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


def _interval(start: Any, end: Any, dag_run: Any, params: Any) -> tuple[datetime, datetime]:
    """The interval this run replays (``orchestration.intervals.of_run``)."""
    from airflow.exceptions import AirflowFailException

    from orchestration import intervals
    from orchestration.exceptions import NotOnScheduleError

    try:
        return intervals.of_run(
            start,
            end,
            run_after=getattr(dag_run, "run_after", None),
            requested=(params or {}).get("from"),
        )
    except NotOnScheduleError as exc:
        # A bad `from` is the trigger's mistake: retrying cannot fix it.
        raise AirflowFailException(str(exc)) from exc


PARAMS = {
    "from": Param(
        None,
        type=["null", "string"],
        title="Interval to replay (start, UTC)",
        description="start of the six-hour interval to replay, on the schedule "
        "(00, 06, 12, 18 UTC), e.g. 2026-03-01T06:00:00Z. Empty: the run's data "
        "interval; for a run triggered without a logical date, the last complete "
        "interval before the trigger.",
    ),
    "output": Param(
        None,
        type=["null", "string"],
        title="Output root",
        description="where the replay writes: a path or an hdfs:// URL "
        "(empty: KAPPA_REPLAY_OUTPUT, default <KAPPA_STATE_DIR>/replay)",
    ),
}
"""The trigger form's fields (the UI's "Trigger DAG" button, ``--conf``)."""

DEFAULT_ARGS = {
    "owner": "kappa",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "on_failure_callback": _failed,
}


# Each task reads its interval from the run (its data interval, trigger time and
# params), not from upstream XComs, so that any one can be rerun alone.


def _wait_closed(settings: AirflowSettings) -> Any:
    @task.sensor(
        task_id="wait_closed",
        mode="reschedule",
        poke_interval=settings.poke_interval_s,
        timeout=settings.wait_timeout_s,
    )
    def wait_closed(
        data_interval_start: Any = None,
        data_interval_end: Any = None,
        dag_run: Any = None,
        params: Any = None,
    ) -> bool:
        from orchestration import callables

        _, end = _interval(data_interval_start, data_interval_end, dag_run, params)
        return callables.interval_closed(end)

    return wait_closed


@task(task_id="replay")
def replay(
    data_interval_start: Any = None,
    data_interval_end: Any = None,
    dag_run: Any = None,
    params: Any = None,
) -> dict[str, Any]:
    from orchestration import callables

    start, end = _interval(data_interval_start, data_interval_end, dag_run, params)
    return callables.replay(start, end, _output(params))


@task(task_id="verify")
def verify(
    data_interval_start: Any = None,
    data_interval_end: Any = None,
    dag_run: Any = None,
    params: Any = None,
) -> dict[str, Any]:
    from airflow.exceptions import AirflowFailException

    from orchestration import callables
    from replay.exceptions import ReplayVerificationError

    start, end = _interval(data_interval_start, data_interval_end, dag_run, params)
    try:
        result = callables.verify(start, end, _output(params))
    except ReplayVerificationError as exc:
        # The output disagrees with the log: retrying the check cannot fix it.
        msg = f"verification failed: {exc}"
        raise AirflowFailException(msg) from exc
    return result


@task(task_id="metrics")
def metrics(
    data_interval_start: Any = None,
    data_interval_end: Any = None,
    dag_run: Any = None,
    params: Any = None,
    ti: Any = None,
) -> dict[str, Any]:
    from orchestration import callables

    start, end = _interval(data_interval_start, data_interval_end, dag_run, params)
    replayed = ti.xcom_pull(task_ids="replay") if ti is not None else None
    seconds = replayed.get("seconds") if isinstance(replayed, dict) else None
    return callables.metrics(start, end, _output(params), replay_seconds=seconds)


def build() -> Any:
    settings = AirflowSettings()

    @dag(
        dag_id=DAG_ID,
        schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
        start_date=settings.start_date or DEFAULT_START,
        # Catch up only from a start someone chose (pinned by `kappa airflow up`).
        catchup=settings.start_date is not None,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        default_args=DEFAULT_ARGS,
        params=PARAMS,
        tags=["kappa", "replay"],
        doc_md=__doc__,
    )
    def kappa_replay() -> None:
        _wait_closed(settings)() >> replay() >> verify() >> metrics()

    return kappa_replay()


kappa_replay_dag = build()
