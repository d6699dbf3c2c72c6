"""The run metrics file: what a run writes, what the exporter serves, what promtool accepts."""

from __future__ import annotations

import shutil
import subprocess
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from orchestration import runmetrics
from orchestration.runmetrics import RunFigures
from stack.net import free_port

T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
T1 = datetime(2026, 3, 2, 12, tzinfo=UTC)
T2 = datetime(2026, 3, 2, 18, tzinfo=UTC)
P = runmetrics.PREFIX


def figures(start: datetime, end: datetime, records: int) -> RunFigures:
    return RunFigures(start, end, records, customers=7, towers=3, revenue=12.5, replay_seconds=4.0)


def test_a_success_writes_the_interval_and_its_figures(tmp_path: Path) -> None:
    now = datetime(2026, 3, 2, 12, 20, tzinfo=UTC)
    path = runmetrics.record_success(tmp_path, figures(T0, T1, 42), now=now)
    assert path == tmp_path / runmetrics.FILE_NAME
    got = runmetrics.read_samples(tmp_path)
    assert got[P + "interval_start_timestamp_seconds"] == T0.timestamp()
    assert got[P + "interval_end_timestamp_seconds"] == T1.timestamp()
    assert got[P + "records"] == 42
    assert got[P + "customers"] == 7
    assert got[P + "towers"] == 3
    assert got[P + "revenue"] == 12.5
    assert got[P + "replay_duration_seconds"] == 4.0
    assert got[P + "last_success_timestamp_seconds"] == now.timestamp()
    assert got[P + "newest_interval_end_timestamp_seconds"] == T1.timestamp()
    assert got[P + "runs_succeeded_total"] == 1


def test_a_backfill_of_an_older_interval_does_not_move_the_newest_end_back(tmp_path: Path) -> None:
    runmetrics.record_success(tmp_path, figures(T1, T2, 10))
    runmetrics.record_success(tmp_path, figures(T0, T1, 20))
    got = runmetrics.read_samples(tmp_path)
    assert got[P + "interval_end_timestamp_seconds"] == T1.timestamp()  # the last run's
    assert got[P + "records"] == 20
    assert got[P + "newest_interval_end_timestamp_seconds"] == T2.timestamp()
    assert got[P + "runs_succeeded_total"] == 2


def test_failures_are_counted_per_task(tmp_path: Path) -> None:
    runmetrics.record_failure(tmp_path, "verify")
    runmetrics.record_failure(tmp_path, "verify")
    runmetrics.record_failure(tmp_path, "replay")
    got = runmetrics.read_samples(tmp_path)
    assert got[P + 'task_failures_total{task="verify"}'] == 2
    assert got[P + 'task_failures_total{task="replay"}'] == 1
    assert got[P + "runs_succeeded_total"] == 0
    assert P + "records" not in got  # no figures before a first success


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    threads = [
        threading.Thread(target=runmetrics.record_failure, args=(tmp_path, "replay"))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runmetrics.read_samples(tmp_path)[P + 'task_failures_total{task="replay"}'] == 8


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_file(tmp_path: Path) -> None:
    runmetrics.record_success(tmp_path, figures(T0, T1, 42))
    runmetrics.record_failure(tmp_path, "verify")
    text = (tmp_path / runmetrics.FILE_NAME).read_bytes()
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_exporter_serves_the_folder_to_a_scrape(tmp_path: Path) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(runmetrics.TextfileCollector(tmp_path))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
            assert P not in resp.read().decode()  # nothing yet, and no error
        runmetrics.record_success(tmp_path, figures(T0, T1, 42))
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    samples = {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples}
    assert samples[P + "records"] == 42
    assert samples[P + "newest_interval_end_timestamp_seconds"] == T1.timestamp()
