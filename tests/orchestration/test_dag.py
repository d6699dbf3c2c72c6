"""The DAG parses, fast and without importing the replay, and has the intended shape."""

# Imports inside functions: Airflow is imported after the fixtures set its environment
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.orchestration.conftest import DAG_FILE

TASKS = ["wait_closed", "replay", "verify", "metrics"]


def test_dagbag_has_no_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert "kappa_replay" in dagbag.dag_ids
    assert len(dagbag.dag_ids) == 1


def test_tasks_run_in_order(kappa_dag: Any) -> None:
    assert sorted(kappa_dag.task_ids) == sorted(TASKS)
    for upstream, downstream in itertools.pairwise(TASKS):
        assert kappa_dag.get_task(upstream).downstream_task_ids == {downstream}
    assert kappa_dag.get_task("wait_closed").upstream_task_ids == set()
    assert kappa_dag.get_task("metrics").downstream_task_ids == set()


def test_schedule_retries_and_concurrency(kappa_dag: Any) -> None:
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert isinstance(kappa_dag.timetable, CronDataIntervalTimetable)
    assert kappa_dag.timetable.summary == "0 */6 * * *"
    assert kappa_dag.max_active_runs == 1
    # No KAPPA_AIRFLOW_START_DATE in the tests' environment: no catchup from a default start.
    assert kappa_dag.catchup is False
    assert kappa_dag.start_date.tzinfo is not None
    assert kappa_dag.start_date.utcoffset() == timedelta(0)
    for task in kappa_dag.tasks:
        assert task.retries == 2, task.task_id
        assert task.retry_delay == timedelta(minutes=5), task.task_id
    sensor = kappa_dag.get_task("wait_closed")
    assert sensor.mode == "reschedule"
    assert {"from", "output"} <= set(kappa_dag.params)
    for name in ("from", "output"):  # what the UI's trigger form shows
        assert kappa_dag.params.get_param(name).description, name


def test_each_run_gets_its_own_six_hour_interval(kappa_dag: Any) -> None:
    from airflow.timetables.base import DataInterval, TimeRestriction

    tt = kappa_dag.timetable
    first = tt.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(
            earliest=datetime(2026, 3, 2, 1, tzinfo=UTC), latest=None, catchup=True
        ),
    )
    assert first.data_interval.start == datetime(2026, 3, 2, 6, tzinfo=UTC)
    assert first.data_interval.end == datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert first.logical_date == first.data_interval.start
    assert first.run_after == first.data_interval.end  # runs once the interval has ended
    following = tt.next_dagrun_info(
        last_automated_data_interval=DataInterval(
            first.data_interval.start, first.data_interval.end
        ),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True),
    )
    assert following.data_interval.start == first.data_interval.end
    assert following.data_interval.end - following.data_interval.start == timedelta(hours=6)
    # What dag.test() and manual triggers get: the last complete interval before the date.
    manual = tt.infer_manual_data_interval(run_after=datetime(2026, 3, 2, 14, 30, tzinfo=UTC))
    assert (manual.start, manual.end) == (
        datetime(2026, 3, 2, 6, tzinfo=UTC),
        datetime(2026, 3, 2, 12, tzinfo=UTC),
    )


def test_parsing_is_fast_and_imports_nothing_heavy(airflow_home: Path) -> None:
    """Parse the file in a fresh interpreter: no Spark, no replay, no Kafka client."""
    probe = (
        "import importlib.util, json, sys, time\n"
        "import airflow.sdk\n"
        f"spec = importlib.util.spec_from_file_location('kappa_replay_probe', {str(DAG_FILE)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "t = time.perf_counter(); spec.loader.exec_module(mod); t = time.perf_counter() - t\n"
        "heavy = [m for m in ('pyspark', 'replay.api', 'confluent_kafka',"
        " 'orchestration.callables') if m in sys.modules]\n"
        "print(json.dumps({'seconds': t, 'heavy': heavy}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["seconds"] < 2.0, report
