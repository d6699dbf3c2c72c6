"""A real Prometheus scraping a running pipeline: every target is up, and every PromQL
expression of every dashboard panel returns at least one series.

The producer, the validator, the aggregation and the replay DAG's run-metrics exporter run
as ``kappa`` subprocesses against the session stack, on fresh topics and free metric
ports; Prometheus scrapes them every second with a config rendered from the same template
as the committed ones. The producer runs a simulated clock (20 event-time seconds per wall
second), so 5-minute windows close within a minute, and injects faulty and late records, so
dead-letter and late-data panels have data.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kappa import clients
from kappa.settings import TopicSettings
from monitoring import prometheus_config as pc
from orchestration import runmetrics
from schemas.contract import register_topic_schemas
from stack.net import free_ports
from tests.fixtures.monitoring import Prometheus
from tests.harness.stack import StackHandle, TopicFactory
from tests.monitoring.promql import dashboard_queries, instantiate, metric_names

pytestmark = [pytest.mark.integration, pytest.mark.timeout(660)]

KAPPA = str(Path(sys.executable).with_name("kappa"))
SETTLE_TIMEOUT_S = 420.0  # Spark alone took 5 min at load 21 on 2 cores
COMMANDS = {"validate": "cli.validate", "aggregate": "cli.aggregate"}
#: Which scrape job owns the metrics of a prefix. Every process imports monitoring.metrics,
#: so an unlabelled counter shows up (as 0) everywhere: a series alone proves little.
OWNERS = {
    "kappa_producer_": pc.PRODUCER,
    "kappa_validator_": pc.VALIDATOR,
    "kappa_aggregate_": pc.AGGREGATOR,
    "kappa_business_": pc.AGGREGATOR,
    "kappa_replay_dag_": pc.AIRFLOW,
}


#: What must have moved in a running pipeline (a 0 exported by default proves nothing).
MOVING = (
    "kappa_producer_records_total",
    "kappa_producer_faults_injected_total",
    "kappa_validator_records_in_total",
    "kappa_validator_records_valid_total",
    "kappa_validator_records_dead_lettered_total",
    "kappa_validator_batch_seconds_count",
    "kappa_aggregate_input_rows_total",
    "kappa_aggregate_batch_duration_seconds_count",
    "kappa_aggregate_watermark_delay_seconds",
    "kappa_aggregate_window_rows_total",
    "kappa_business_windows_closed_total",
    "kappa_business_window_active_callers",
    "kappa_replay_dag_records",
)


def owner(name: str) -> str | None:
    return next((job for prefix, job in OWNERS.items() if name.startswith(prefix)), None)


@dataclass
class Job:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 2500) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to the job's process group (the JVM of a Spark job too), then SIGKILL."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Whatever the job left in its group (a Spark JVM) goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    started: list[Job] = []
    yield started
    for job in reversed(started):
        job.stop()


@pytest.fixture
def topics(stack: StackHandle, topic: TopicFactory) -> Iterator[TopicFactory]:
    """The ``topic`` factory, whose topics this fixture deletes with bounded waits."""
    yield topic
    admin = clients.admin(stack.kafka)  # held until every future is done
    if topic.created:
        for future in admin.delete_topics(list(topic.created), operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=40)
    topic.created.clear()


def start(jobs: list[Job], name: str, argv: list[str], env: dict[str, str], logs: Path) -> Job:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [KAPPA, *argv], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    job = Job(name, proc, log)
    jobs.append(job)
    return job


def pipeline_env(
    stack: StackHandle, topic: TopicFactory, ports: dict[str, int], tmp: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPPA_")}
    run = tmp.name[-12:]
    env.update(
        {
            "KAPPA_KAFKA_BOOTSTRAP": stack.bootstrap,
            "KAPPA_SCHEMA_REGISTRY_URL": stack.registry_url,
            "KAPPA_STATE_DIR": str(tmp / "state"),
            "KAPPA_LOG_LEVEL": "INFO",
            "KAPPA_PRODUCER_METRICS_PORT": str(ports[pc.PRODUCER]),
            "KAPPA_VALIDATOR_METRICS_PORT": str(ports[pc.VALIDATOR]),
            "KAPPA_AGGREGATE_METRICS_PORT": str(ports[pc.AGGREGATOR]),
            "KAPPA_VALIDATOR_GROUP_ID": f"monitoring-e2e-{run}",
            "KAPPA_VALIDATOR_TRANSACTIONAL_ID": f"monitoring-e2e-{run}",
            "KAPPA_VALIDATOR_QUALITY_DIR": str(tmp / "quality"),
            "KAPPA_AGGREGATE_OUTPUT": str(tmp / "aggregate"),
            "KAPPA_AGGREGATE_CHECKPOINT_DIR": str(tmp / "checkpoints"),
            "KAPPA_AGGREGATE_TRIGGER": "2 seconds",
            "KAPPA_AGGREGATE_SHUFFLE_PARTITIONS": "2",
            "KAPPA_AGGREGATE_DRIVER_MEMORY": "1g",
        }
    )
    names = {}
    for var in ("RAW", "VALID", "DLQ", "BILLING", "NETWORK", "LATE"):
        names[var.lower()] = env[f"KAPPA_TOPIC_{var}"] = topic(
            partitions=2, prefix=f"mon-{var.lower()}"
        )
    # Registered once here: three processes registering the same subjects at once race in
    # the registry (two creating the subject's compatibility rule).
    register_topic_schemas(clients.registry(stack.registry), TopicSettings(**names))
    return env


def test_dashboards_show_a_running_pipeline(
    stack: StackHandle,
    topics: TopicFactory,
    prometheus: Callable[[Path], Prometheus],
    jobs: list[Job],
    tmp_path: Path,
) -> None:
    missing = [f"kappa {c}" for c, mod in COMMANDS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        pytest.fail(f"not in this checkout yet: {', '.join(missing)}")
    jobs_scraped = (pc.PRODUCER, pc.VALIDATOR, pc.AGGREGATOR, pc.AIRFLOW)
    ports = dict(zip(jobs_scraped, free_ports(len(jobs_scraped)), strict=True))
    config = pc.write_local_config(
        tmp_path / "prometheus.yml", {**ports, pc.REPLAY: 0}, scrape_interval="1s"
    )
    prom = prometheus(config)
    env = pipeline_env(stack, topics, ports, tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    start_at = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    producer = [
        "produce", "--rate", "50", "--duration", "400", "--seed", "7",
        "--bad-rate", "0.05", "--duplicate-rate", "0.01", "--late-rate", "0.03",
        "--clock", "simulated", "--start", start_at.isoformat(), "--speed", "20",
    ]  # fmt: skip
    start(jobs, "aggregate", ["aggregate"], env, logs)  # the slowest to start
    start(jobs, "validate", ["validate"], env, logs)
    start(jobs, "produce", producer, env, logs)
    # The replay DAG's metrics task writes this file after a run; its exporter serves it.
    runs = tmp_path / "run-metrics"
    runmetrics.record_success(
        runs,
        runmetrics.RunFigures(
            start=start_at,
            end=start_at + timedelta(hours=6),
            records=1000,
            customers=90,
            towers=50,
            revenue=1234.5,
            replay_seconds=42.0,
        ),
    )
    runmetrics.record_failure(runs, "verify")
    exporter = ["airflow", "metrics-exporter", "--port", str(ports[pc.AIRFLOW]), "--dir", str(runs)]
    start(jobs, "airflow-metrics", exporter, env, logs)

    queries = list(dashboard_queries())
    pending = {expr for _, _, expr in queries}
    down: list[str] = ["(not scraped yet)"]
    unowned = {n for _, _, e in queries for n in metric_names(e) if owner(n)}
    still = set(MOVING)
    began = time.monotonic()
    deadline = began + SETTLE_TIMEOUT_S
    exited = ""
    while time.monotonic() < deadline and not exited:
        exited = next(
            (
                f"kappa {j.name} exited ({j.process.returncode})\n"
                for j in jobs
                if j.process.poll() is not None
            ),
            "",
        )
        targets = prom.targets()
        down = [
            f"{t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t['lastError']}"
            for t in targets
            if t["health"] != "up"
        ]
        if len(targets) != len(ports):
            down.append(f"{len(targets)} targets, expected {len(ports)}")
        pending = {expr for expr in pending if not prom.query(instantiate(expr))}
        unowned = {
            name
            for name in unowned
            if not prom.query(f'count by (job) ({{__name__="{name}", job="{owner(name)}"}})')
        }
        still = {
            name
            for name in still
            if not prom.query(f'sum({{__name__="{name}", job="{owner(name)}"}}) > 0')
        }
        if not pending and not down and not unowned and not still:
            print(f"settled after {time.monotonic() - began:.0f} s")
            break
        time.sleep(2)

    if pending or down or unowned or still:
        empty = sorted({f"  {f} / {t}: {e}" for f, t, e in queries if e in pending})
        logs_text = "\n".join(f"--- {j.name}\n{j.tail(1500)}" for j in jobs)
        pytest.fail(
            f"{exited}after {time.monotonic() - began:.0f} s:\ntargets not up: {down or 'none'}\n"
            f"expressions without series:\n{chr(10).join(empty) or 'none'}\n"
            f"metrics not exported by their own process: {sorted(unowned) or 'none'}\n"
            f"metrics still at 0: {sorted(still) or 'none'}\n"
            f"{logs_text}"
        )
    assert {t["labels"]["job"] for t in prom.targets()} == set(ports)
    # The alert rules load and evaluate against the live series.
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} >= {"KappaDeadLetterShareHigh", "KappaStreamStalled"}
    assert all(r["health"] in ("ok", "unknown") for r in rules), rules
