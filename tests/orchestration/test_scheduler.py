"""The DAG on the real scheduler, triggered as the README says.

``kappa airflow up`` starts the api-server, scheduler and dag-processor
(LocalExecutor, SQLite) in a temporary state folder, on the session's broker and
registry; then, with the exports of ``kappa airflow env``:

* ``airflow dags unpause kappa_replay`` and ``airflow dags trigger kappa_replay``:
  a manual run without a logical date, which replays the last complete interval;
* ``airflow dags trigger kappa_replay --logical-date T --conf '{"output": ...}'``:
  the interval before T, to another output.

Both must succeed end to end: Parquet, manifest, verify, metrics. Only the
replay task may start Spark; the task durations are printed (``-s``) for the record.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from orchestration import runmetrics
from orchestration.intervals import last_complete
from replay.plan import range_id
from stack.net import free_port
from tests.harness.stack import StackHandle, TopicFactory
from tests.orchestration.live import LiveAirflow
from tests.orchestration.test_dag_run import write_valid
from tests.replay.conftest import published_folder

pytestmark = [pytest.mark.integration, pytest.mark.spark]

TASKS = ["wait_closed", "replay", "verify", "metrics"]
SPARK_STARTED = "spark session master="  # streams.spark.session logs it
P = runmetrics.PREFIX


@dataclass(frozen=True)
class Live:
    airflow: LiveAirflow
    state: Path
    start: datetime
    end: datetime
    call_ids: list[str]
    runs: list[dict[str, Any]]  # manual (no logical date), then with a logical date
    other_output: Path


def records_in(start: datetime, end: datetime, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    span = int((end - start).total_seconds())
    times = [start, end - timedelta(milliseconds=1)]
    times += [start + timedelta(seconds=rng.randrange(span)) for _ in range(n - 2)]
    times += [start - timedelta(seconds=1), end]  # just outside
    return [
        {
            "call_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "caller_num": f"+9477{rng.randrange(6):07d}",
            "callee_num": f"+9471{rng.randrange(10**7):07d}",
            "call_type": "VOICE",
            "duration_sec": rng.randrange(1, 600),
            "event_time": t,
            "tower_id": f"TWR-{rng.randrange(4):03d}",
            "signal_strength": rng.randrange(1, 6),
            "data_volume_kb": 0,
        }
        for t in sorted(times)
    ]


@pytest.fixture(scope="module")
def live(stack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    topics = TopicFactory(stack.kafka, stack.topics)
    topic = topics(partitions=2, prefix="airflow-live")
    state = tmp_path_factory.mktemp("airflow-live")
    start, end = last_complete(datetime.now(UTC))
    records = records_in(start, end, 24, seed=18)
    write_valid(stack, topic, records)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "KAPPA_STATE_DIR": str(state),
        "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
        "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
        "KAPPA_TOPIC_VALID": topic,
        "KAPPA_AIRFLOW_PORT": str(free_port()),
        "KAPPA_AIRFLOW_METRICS_PORT": "0",
        "KAPPA_REPLAY_METRICS_PORT": "0",
        "KAPPA_AGGREGATE_SHUFFLE_PARTITIONS": "2",
        # The interval just ended: close it now rather than 15 minutes after its end.
        "KAPPA_REPLAY_LATENESS_MARGIN_S": "1",
        "KAPPA_AIRFLOW_LATENESS_MARGIN_S": "1",
        "KAPPA_AIRFLOW_POKE_INTERVAL_S": "5",
    }
    for key in ("KAPPA_AIRFLOW_HOME", "KAPPA_AIRFLOW_METRICS_DIR", "KAPPA_AIRFLOW_START_DATE"):
        env.pop(key, None)
    airflow = LiveAirflow(env)
    other = state / "by-logical-date"
    try:
        airflow.up()
        airflow.airflow("dags", "unpause", "kappa_replay")
        airflow.airflow("dags", "trigger", "kappa_replay")  # the last complete interval
        airflow.airflow(
            "dags", "trigger", "kappa_replay",
            "--logical-date", end.isoformat(), "--conf", json.dumps({"output": str(other)}),
        )  # fmt: skip
        runs = airflow.wait(2)
        yield Live(
            airflow, state, start, end, sorted(r["call_id"] for r in records[1:-1]), runs, other
        )
    finally:
        airflow.down()
        topics.cleanup()


def test_up_puts_airflow_under_the_state_folder(live: Live) -> None:
    assert Path(live.airflow.airflow_env["AIRFLOW_HOME"]) == live.state.resolve() / "airflow"
    start = datetime.fromisoformat(live.airflow.airflow_env["KAPPA_AIRFLOW_START_DATE"])
    assert start == live.end  # pinned at the first `up`: the interval under way, no catchup
    assert (live.state / "airflow" / "airflow.db").exists()


def test_a_manual_trigger_replays_the_last_complete_interval(live: Live) -> None:
    run = live.runs[0]
    assert run["logical_date"] is None
    assert run["data_interval_start"] is None  # what Airflow 3 gives a manual run
    tasks = live.airflow.tasks(run["dag_run_id"])
    durations = {t: tasks[t]["duration"] for t in TASKS}
    print(f"\nmanual run task seconds: {durations}")
    assert run["state"] == "success", {t: tasks[t]["state"] for t in TASKS}
    folder = published_folder(live.state / "replay", range_id(live.start, live.end))
    assert (folder / "_SUCCESS").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["records"] == len(live.call_ids)
    assert sorted(pd.read_parquet(folder / "cdr")["call_id"]) == live.call_ids
    got = runmetrics.read_samples(live.state / "airflow" / "metrics")
    assert got[P + "records"] == len(live.call_ids)  # both runs replayed this interval
    assert got[P + "interval_end_timestamp_seconds"] == live.end.timestamp()
    assert got[P + "runs_succeeded_total"] == 2  # both runs of this test


def test_a_trigger_with_a_logical_date_replays_the_interval_before_it(live: Live) -> None:
    run = live.runs[1]
    assert datetime.fromisoformat(run["logical_date"]) == live.end
    assert datetime.fromisoformat(run["data_interval_start"]) == live.start
    tasks = live.airflow.tasks(run["dag_run_id"])
    durations = {t: tasks[t]["duration"] for t in TASKS}
    print(f"\nlogical-date run task seconds: {durations}")
    assert run["state"] == "success", {t: tasks[t]["state"] for t in TASKS}
    folder = published_folder(live.other_output, range_id(live.start, live.end))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["records"] == len(live.call_ids)
    assert sorted(pd.read_parquet(folder / "cdr")["call_id"]) == live.call_ids


@pytest.mark.parametrize("run_index", [0, 1])
def test_only_the_replay_task_starts_spark(live: Live, run_index: int) -> None:
    run_id = live.runs[run_index]["dag_run_id"]
    logs = {t: live.airflow.task_log(run_id, t) for t in TASKS}
    assert all(logs.values()), {t: len(v) for t, v in logs.items()}
    assert SPARK_STARTED in logs["replay"]
    for light in ("wait_closed", "verify", "metrics"):
        assert SPARK_STARTED not in logs[light], light
