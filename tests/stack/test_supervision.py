"""Process supervision of the local stack: kill -9 any service at random moments, ten
times, while CDRs are produced and validated; ``kappa stack up`` brings it back every
time, ``status`` says what runs, ``down`` leaves no process, and the ledger shows
nothing lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.harness.stack import free_port_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = ("kafka", "registry", "hdfs-namenode", "hdfs-datanode", "prometheus")
KILLS = 10
PRODUCED = 6000
RATE = 40  # about 150 s of production, across the kills
KAPPA = str(Path(sys.executable).parent / "kappa")


def _env(state: Path) -> dict[str, str]:
    s = free_port_settings(state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPPA_")}
    env.update(
        {
            "KAPPA_STATE_DIR": str(state),
            "KAPPA_DEPS_DIR": str(s.deps_dir),
            "KAPPA_KAFKA_PORT": str(s.kafka_port),
            "KAPPA_CONTROLLER_PORT": str(s.controller_port),
            "KAPPA_REGISTRY_PORT": str(s.registry_port),
            "KAPPA_HDFS_NAMENODE_PORT": str(s.hdfs_namenode_port),
            "KAPPA_HDFS_HTTP_PORT": str(s.hdfs_http_port),
            "KAPPA_PROMETHEUS_PORT": str(s.prometheus_port),
            "KAPPA_START_TIMEOUT_S": "180",
            "KAPPA_KAFKA_BOOTSTRAP": f"127.0.0.1:{s.kafka_port}",
            "KAPPA_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{s.registry_port}/apis/ccompat/v7",
            "KAPPA_PRODUCER_METRICS_PORT": "0",
            "KAPPA_VALIDATOR_METRICS_PORT": "0",
        }
    )
    return env


def _kappa(
    env: dict[str, str], *args: str, timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAPPA, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _status(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = _kappa(env, "stack", "status", "--json")
    return {s["name"]: s for s in json.loads(out.stdout)["services"]}


def _pid(state: Path, name: str) -> int:
    return int(json.loads((state / "run" / f"{name}.pid").read_text())["pid"])


def _ours(state: Path) -> list[str]:
    """Processes of this stack still running (their marker names the state folder)."""
    found = subprocess.run(
        ["pgrep", "-af", f"kappa.service=[^ ]*@{state}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_any_service_killed_ten_times_under_load_comes_back_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    env = _env(state)
    up = ("stack", "up", "--with-hdfs", "--with-monitoring")
    started = _kappa(env, *up)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        _under_load(env, state, up)
    finally:
        _kappa(env, "stack", "down")  # whatever happened, leave no process


def _under_load(env: dict[str, str], state: Path, up: tuple[str, ...]) -> None:
    began = datetime.now(UTC) - timedelta(minutes=1)  # message times: the wall clock
    producer = subprocess.Popen(
        [KAPPA, "produce", "--count", str(PRODUCED), "--rate", str(RATE), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    validator = subprocess.Popen(
        [KAPPA, "validate"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    rnd = random.Random(14)
    victims = [
        *rnd.sample(SERVICES, len(SERVICES)),
        *rnd.choices(SERVICES, k=KILLS - len(SERVICES)),
    ]
    try:
        for victim in victims:
            time.sleep(rnd.uniform(1, 8))  # a random moment of the load
            pid = _pid(state, victim)
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            seen = _status(env)[victim]
            assert seen["health"] != "up", (victim, seen)  # status tells the truth
            back = _kappa(env, *up)
            assert back.returncode == 0, (victim, back.stderr[-3000:])
            after = _status(env)
            assert {n: s["health"] for n, s in after.items()} == dict.fromkeys(SERVICES, "up")
            assert after[victim]["pid"] != pid
        out, _ = producer.communicate(timeout=600)
        assert producer.returncode == 0
        produced = json.loads(out.strip().splitlines()[-1])
    finally:
        producer.kill()
        validator.send_signal(signal.SIGTERM)
        try:
            validator.wait(timeout=60)
        except subprocess.TimeoutExpired:
            validator.kill()
    try:
        caught_up = _kappa(env, "validate", "--until-caught-up")
        assert caught_up.returncode == 0, caught_up.stderr[-3000:]
        until = datetime.now(UTC) + timedelta(minutes=1)
        ledger = _kappa(
            env, "ledger", "--from", began.isoformat(), "--to", until.isoformat(), "--json"
        )
        assert ledger.returncode == 0, ledger.stdout + ledger.stderr[-3000:]
        report = json.loads(ledger.stdout)
        assert report["missing"] == 0
        assert report["doubled"] == 0
        assert report["raw"] == produced["delivered"]
        assert report["valid"] + report["dead_lettered"] == report["raw"]
    finally:
        down = _kappa(env, "stack", "down")
    assert down.returncode == 0, down.stderr[-3000:]
    assert _ours(state) == []
    assert _kappa(env, "stack", "status").returncode == 1  # nothing runs, and status says so
