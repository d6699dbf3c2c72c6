"""`kappa validate` as a background process (as `make demo` runs it), SIGTERM, and the
commands that read its output: `kappa dlq tail`, `kappa ledger`, `kappa quality report`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kappa.settings import TopicSettings, ValidatorSettings
from tests.fixtures.validate import raw_encoder, read_all, valid_record, wait_for

pytestmark = pytest.mark.integration

KAPPA = str(Path(sys.executable).with_name("kappa"))


def _env(
    stack: Any, topics: TopicSettings, settings: ValidatorSettings, tmp_path: Path
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
            "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
            "KAPPA_TOPIC_RAW": topics.raw,
            "KAPPA_TOPIC_VALID": topics.valid,
            "KAPPA_TOPIC_DLQ": topics.dlq,
            "KAPPA_VALIDATOR_GROUP_ID": settings.group_id,
            "KAPPA_VALIDATOR_TRANSACTIONAL_ID": settings.transactional_id,
            "KAPPA_VALIDATOR_METRICS_PORT": "0",
            "KAPPA_VALIDATOR_QUALITY_DIR": str(tmp_path / "quality"),
        }
    )
    return env


def _kappa(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAPPA, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_background_validator_stops_cleanly_on_sigterm_and_the_tools_read_its_output(
    stack: Any,
    validator_topics: TopicSettings,
    validator_settings: ValidatorSettings,
    tmp_path: Path,
) -> None:
    topics = validator_topics
    env = _env(stack, topics, validator_settings, tmp_path)
    enc = raw_encoder(stack, topics)
    now = time.time_ns() // 1_000_000
    good = [valid_record(event_time=now) for _ in range(30)]
    bad = [valid_record(event_time=now, duration_sec=9999) for _ in range(4)]
    log = tmp_path / "validate.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([KAPPA, "validate"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        from kappa import clients

        producer = clients.producer(stack.kafka)
        for r in [*good, *bad]:
            producer.produce(topics.raw, enc.encode(r), r["call_id"].encode())
        assert producer.flush(30) == 0
        wait_for(lambda: len(read_all(stack.kafka, topics.valid)) == len(good), 240, 1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert "validator stopped" in log.read_text(errors="replace")

    tail = _kappa(env, "dlq", "tail", "--format", "json")
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(x) for x in tail.stdout.splitlines()]
    assert sorted(x["call_id"] for x in lines) == sorted(r["call_id"] for r in bad)
    assert all(x["rules"] == ["duration_range"] for x in lines)
    assert all(x["failures"][0]["observed"] == "9999" for x in lines)
    table = _kappa(env, "dlq", "tail", "--rule", "duration_range")
    assert table.returncode == 0
    assert len(table.stdout.splitlines()) == 1 + len(bad)

    ledger = _kappa(env, "ledger", "--from", "2000-01-01", "--to", "2100-01-01", "--json")
    assert ledger.returncode == 0, ledger.stdout + ledger.stderr
    report = json.loads(ledger.stdout)
    assert report["balanced"]
    assert (report["raw"], report["valid"], report["dead_lettered"]) == (34, 30, 4)
    by_offset = _kappa(env, "ledger", "--partition", "0", "--from-offset", "0", "--json")
    assert by_offset.returncode == 0
    assert json.loads(by_offset.stdout)["balanced"]

    quality = _kappa(env, "quality", "report", "--from", "2000-01-01", "--to", "2100-01-01")
    assert quality.returncode == 0, quality.stderr[-3000:]
    index = Path(quality.stdout.strip().splitlines()[-1].removeprefix("Data Docs: "))
    assert index.is_file()
    assert index.name == "index.html"
