# Imports inside functions: Airflow is imported after the fixtures set its environment
"""The DAG end to end with the real local stack, Spark and ``dag.test()``.

``dag.test(logical_date=T)`` runs one DAG run in this process with the scheduler's
dependency rules; its data interval is the timetable's manual one: the last complete
six-hour interval before ``T``. So ``logical_date=end`` runs the interval ``[end - 6 h,
end)``. A backfill (``airflow backfill create``, which needs a running scheduler) is
played here as one ``dag.test`` per interval of the range; the real command is run in
``--dry-run`` mode to show that it plans exactly those intervals.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import ceil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kappa import clients
from kappa.settings import AggregateSettings
from orchestration import runmetrics
from replay.plan import range_id
from schemas import SchemaName, WireEncoder
from schemas.contract import load_schema, register, schema_text, subject
from tests.harness.stack import StackHandle, TopicFactory
from tests.replay.conftest import published_folder

pytestmark = [pytest.mark.integration, pytest.mark.spark]

S0 = datetime(2026, 3, 2, 0, tzinfo=UTC)
SIX = timedelta(hours=6)
INTERVALS = [(S0, S0 + SIX), (S0 + SIX, S0 + 2 * SIX)]
PER_INTERVAL = 30
P = runmetrics.PREFIX
RATES = AggregateSettings()


@dataclass(frozen=True)
class Scenario:
    topic: str
    state_dir: Path
    metrics_dir: Path
    records: list[dict[str, Any]]

    def expected(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Records, customers, towers and revenue of [start, end), computed here."""
        inside = [r for r in self.records if start <= r["event_time"] < end]
        # revenue: rounded per caller per 5-minute window (the billing transform's rule)
        per_window: dict[tuple[str, int], float] = {}
        for r in inside:
            key = (r["caller_num"], int(r["event_time"].timestamp()) // 300)
            minutes = ceil(r["duration_sec"] / 60) if r["call_type"] == "VOICE" else 0
            sms = 1 if r["call_type"] == "SMS" else 0
            per_window[key] = per_window.get(key, 0.0) + (
                minutes * RATES.rate_voice_per_minute
                + sms * RATES.rate_sms_each
                + r["data_volume_kb"] / 1024.0 * RATES.rate_data_per_mb
            )
        return {
            "records": len(inside),
            "customers": len({r["caller_num"] for r in inside}),
            "towers": len({r["tower_id"] for r in inside}),
            "revenue": sum(round(v, 4) for v in per_window.values()),
            "call_ids": sorted(r["call_id"] for r in inside),
        }


def make_records(seed: int) -> list[dict[str, Any]]:
    """CDRs spread over both intervals, plus one just before and one at the end of the range."""
    rng = random.Random(seed)
    callers = [f"+9477{i:07d}" for i in range(8)]
    out = []
    times = [S0 - timedelta(seconds=1), S0 + 2 * SIX]  # outside the intervals
    for start, end in INTERVALS:
        span = int((end - start).total_seconds())
        times += [start, end - timedelta(milliseconds=1)]  # both edges, inside
        times += [start + timedelta(seconds=rng.randrange(span)) for _ in range(PER_INTERVAL - 2)]
    for t in times:
        call_type = rng.choice(["VOICE", "SMS", "DATA"])
        out.append(
            {
                "call_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "caller_num": rng.choice(callers),
                "callee_num": f"+9471{rng.randrange(10**7):07d}",
                "call_type": call_type,
                "duration_sec": 0 if call_type == "SMS" else rng.randrange(1, 3600),
                "event_time": t,
                "tower_id": f"TWR-{rng.randrange(5):03d}",
                "signal_strength": rng.randrange(1, 6),
                "data_volume_kb": rng.randrange(1, 50_000) if call_type == "DATA" else 0,
            }
        )
    # In event-time order, as the validator writes them, except around the boundary
    # between the intervals: the record at its very end arrives 1 ms late.
    out.sort(key=lambda r: r["event_time"])
    i = next(i for i, r in enumerate(out) if r["event_time"] == INTERVALS[1][0])
    out[i - 1], out[i] = out[i], out[i - 1]
    return out


def write_valid(stack: StackHandle, topic: str, records: list[dict[str, Any]]) -> None:
    """Write Cdr records as the validator would: Confluent framing, timestamp = event time."""
    registry = clients.registry(stack.registry)
    schema_id = register(registry, subject(topic), schema_text(SchemaName.CDR))
    encoder = WireEncoder(load_schema(SchemaName.CDR), schema_id)
    producer = clients.producer(stack.kafka)
    for r in records:
        producer.produce(
            topic,
            key=r["call_id"].encode(),
            value=encoder.encode(r),
            timestamp=int(r["event_time"].timestamp() * 1000),
        )
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def scenario(
    stack: StackHandle, airflow_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    topics = TopicFactory(stack.kafka, stack.topics)
    topic = topics(partitions=3, prefix="airflow")
    state = tmp_path_factory.mktemp("airflow-replay-state")
    records = make_records(seed=6)
    write_valid(stack, topic, records)
    env = {
        "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
        "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
        "KAPPA_TOPIC_VALID": topic,
        "KAPPA_STATE_DIR": str(state),
        "KAPPA_REPLAY_PROGRESS": "false",
        "KAPPA_AGGREGATE_SHUFFLE_PARTITIONS": "2",  # as the shared `spark` fixture
        "KAPPA_REPLAY_METRICS_PORT": "0",  # `kappa replay` would serve on a fixed port
        "KAPPA_AIRFLOW_METRICS_DIR": str(state / "metrics"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield Scenario(topic, state, state / "metrics", records)
    topics.cleanup()


def run_interval(
    dag: Any, end: datetime, output: Path, mark_success: str | None = None
) -> tuple[str, dict[str, str]]:
    """One DAG run for [end - 6 h, end); its state and the state of each task."""
    dr = dag.test(
        logical_date=end, run_conf={"output": str(output)}, mark_success_pattern=mark_success
    )
    assert dr.data_interval_start == end - SIX
    assert dr.data_interval_end == end
    return str(dr.state), {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}


def read_table(folder: Path) -> pd.DataFrame:
    df = pd.read_parquet(folder)
    for col in df.columns:  # partition columns come back as categories
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(str)
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def outputs(root: Path, start: datetime, end: datetime) -> dict[str, pd.DataFrame]:
    folder = published_folder(root, range_id(start, end))
    return {name: read_table(folder / name) for name in ("cdr", "billing_report", "network_health")}


@dataclass(frozen=True)
class Backfill:
    output: Path
    runs: list[tuple[str, dict[str, str]]]  # per interval: run state, task states
    samples: list[dict[str, float]]  # per interval: the metrics file after its run


@pytest.fixture(scope="module")
def backfill(
    kappa_dag: Any, scenario: Scenario, spark: Any, tmp_path_factory: pytest.TempPathFactory
) -> Backfill:
    """The DAG run once per interval of the range (what `airflow backfill create` does)."""
    out = tmp_path_factory.mktemp("airflow-dag-out")
    runs, samples = [], []
    for _, end in INTERVALS:
        runs.append(run_interval(kappa_dag, end, out))
        samples.append(runmetrics.read_samples(scenario.metrics_dir))
    return Backfill(out, runs, samples)


def test_each_run_replays_verifies_and_reports_its_interval(
    backfill: Backfill, scenario: Scenario
) -> None:
    for (start, end), (state, tasks), got in zip(
        INTERVALS, backfill.runs, backfill.samples, strict=True
    ):
        assert state == "success", tasks
        assert tasks == dict.fromkeys(["wait_closed", "replay", "verify", "metrics"], "success")
        folder = published_folder(backfill.output, range_id(start, end))
        assert (folder / "_SUCCESS").exists()
        manifest = json.loads((folder / "manifest.json").read_text())
        want = scenario.expected(start, end)
        assert manifest["counts"]["records"] == want["records"] == PER_INTERVAL
        cdr = read_table(folder / "cdr")
        assert sorted(cdr["call_id"]) == want["call_ids"]  # exactly the interval, once each

        assert got[P + "records"] == want["records"]
        assert got[P + "customers"] == want["customers"]
        assert got[P + "towers"] == want["towers"]
        assert got[P + "revenue"] == pytest.approx(want["revenue"], abs=1e-3)
        assert got[P + "interval_start_timestamp_seconds"] == start.timestamp()
        assert got[P + "interval_end_timestamp_seconds"] == end.timestamp()
        assert got[P + "newest_interval_end_timestamp_seconds"] == end.timestamp()
        assert got[P + "replay_duration_seconds"] > 0
    assert backfill.samples[-1][P + "runs_succeeded_total"] == len(INTERVALS)


def test_a_backfill_equals_kappa_replay_per_interval(
    backfill: Backfill, airflow_db: Path, scenario: Scenario, tmp_path: Path
) -> None:
    from cli import main

    cli_out = tmp_path / "cli"
    for start, end in INTERVALS:
        main(["replay", "--from", start.isoformat(), "--to", end.isoformat(),
              "--output", str(cli_out)])  # fmt: skip
        by_dag, by_cli = outputs(backfill.output, start, end), outputs(cli_out, start, end)
        for name in by_dag:
            pd.testing.assert_frame_equal(by_dag[name], by_cli[name], check_like=True)

    # The real backfill command plans exactly these intervals (logical date = interval start).
    airflow = str(Path(sys.executable).parent / "airflow")
    done = subprocess.run(
        [airflow, "backfill", "create", "--dag-id", "kappa_replay",
         "--from-date", INTERVALS[0][0].isoformat(), "--to-date", INTERVALS[-1][0].isoformat(),
         "--reprocess-behavior", "completed", "--dry-run"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    planned = [
        line.strip().removeprefix("- ")
        for line in done.stdout.split("Logical dates to be attempted:")[-1].splitlines()
        if line.strip().startswith("- ")
    ]
    assert planned == [f"{s:%Y-%m-%d %H:%M:%S}+00:00" for s, _ in INTERVALS]


def test_a_rerun_replaces_its_interval_never_doubles_it(
    kappa_dag: Any, backfill: Backfill, scenario: Scenario
) -> None:
    start, end = INTERVALS[0]
    before = outputs(backfill.output, start, end)
    state, tasks = run_interval(kappa_dag, end, backfill.output)
    assert state == "success", tasks
    after = outputs(backfill.output, start, end)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name], check_like=True)
    assert after["cdr"]["call_id"].is_unique
    assert sorted(after["cdr"]["call_id"]) == scenario.expected(start, end)["call_ids"]
    assert sorted(p.name for p in backfill.output.iterdir() if not p.name.startswith(".")) == (
        sorted(range_id(s, e) for s, e in INTERVALS)
    )
    # A rerun of an older interval leaves the newest interval end where it was.
    got = runmetrics.read_samples(scenario.metrics_dir)
    assert got[P + "interval_end_timestamp_seconds"] == end.timestamp()
    assert got[P + "newest_interval_end_timestamp_seconds"] == INTERVALS[-1][1].timestamp()


def test_a_manifest_that_disagrees_with_the_log_fails_the_run(
    kappa_dag: Any, backfill: Backfill, scenario: Scenario, tmp_path: Path
) -> None:
    start, end = INTERVALS[1]
    doctored = tmp_path / "doctored"
    shutil.copytree(backfill.output / range_id(start, end), doctored / range_id(start, end))
    manifest_path = published_folder(doctored, range_id(start, end)) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["counts"]["records"] += 1
    manifest_path.write_text(json.dumps(manifest))
    (manifest_path.parent / ".manifest.json.crc").unlink(missing_ok=True)  # Hadoop's checksum
    failures_before = runmetrics.read_samples(scenario.metrics_dir).get(
        P + 'task_failures_total{task="verify"}', 0.0
    )

    # Verify (then metrics) against the doctored output; the replay is not rerun.
    state, tasks = run_interval(kappa_dag, end, doctored, mark_success="wait_closed|replay")
    assert state == "failed"
    assert tasks["verify"] == "failed"  # not up_for_retry: a disagreement is not transient
    assert tasks["metrics"] == "upstream_failed"
    after = runmetrics.read_samples(scenario.metrics_dir)
    assert after[P + 'task_failures_total{task="verify"}'] == failures_before + 1


def test_a_run_without_logical_date_replays_the_interval_its_from_param_names(
    kappa_dag: Any, backfill: Backfill, scenario: Scenario
) -> None:
    """As `airflow dags trigger kappa_replay --conf '{"from": ...}'` makes it: no data interval."""
    start, end = INTERVALS[0]
    conf = {"from": start.isoformat().replace("+00:00", "Z"), "output": str(backfill.output)}
    # The replay's output is there already; verify and metrics read it for the named interval.
    dr = kappa_dag.test(logical_date=None, run_conf=conf, mark_success_pattern="replay")
    assert dr.logical_date is None
    assert dr.data_interval_start is None
    tasks = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert str(dr.state) == "success", tasks
    got = runmetrics.read_samples(scenario.metrics_dir)
    assert got[P + "interval_start_timestamp_seconds"] == start.timestamp()
    assert got[P + "interval_end_timestamp_seconds"] == end.timestamp()
    assert got[P + "records"] == scenario.expected(start, end)["records"]


def test_a_from_param_off_the_schedule_fails_the_run_without_retrying(kappa_dag: Any) -> None:
    dr = kappa_dag.test(logical_date=None, run_conf={"from": "2026-03-02T01:00:00Z"})
    tasks = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    assert str(dr.state) == "failed"
    assert tasks["wait_closed"] == "failed", tasks  # not up_for_retry
