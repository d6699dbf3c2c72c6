"""Every ``kappa`` command with a service down, or given a bad flag, ends in one
line naming the cause and a documented exit code (``kappa.exceptions``), never a
traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kappa.exceptions import EXIT_BAD_SETTING, EXIT_UNREACHABLE
from tests.cli.ports import closed_port
from tests.harness.stack import StackHandle

pytestmark = pytest.mark.integration

RANGE = ("--from", "2026-01-01T00:00:00", "--to", "2026-01-01T06:00:00")
# Each command as the README shows it, bounded.
COMMANDS: dict[str, tuple[str, ...]] = {
    "produce": ("produce", "--count", "5"),
    "validate": ("validate", "--until-caught-up"),
    "dlq tail": ("dlq", "tail", "--limit", "1"),
    "ledger": ("ledger",),
    "topics": ("topics",),
    "aggregate": ("aggregate", "--available-now"),
    "replay": ("replay", *RANGE),
    "parity": ("parity", *RANGE),
}
# Those that read or write Avro through the registry before anything else can fail.
NEED_REGISTRY = ("produce", "validate", "aggregate")


def _env(tmp: Path, bootstrap: str, registry: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPPA_")}
    env.update(
        {
            "KAPPA_STATE_DIR": str(tmp / "state"),
            "KAPPA_KAFKA_BOOTSTRAP": bootstrap,
            "KAPPA_SCHEMA_REGISTRY_URL": registry,
            "KAPPA_AGGREGATE_OUTPUT": str(tmp / "out"),
            "KAPPA_AGGREGATE_CHECKPOINT_DIR": str(tmp / "ckpt"),
            "KAPPA_REPLAY_OUTPUT": str(tmp / "replay"),
            "KAPPA_AGGREGATE_METRICS_PORT": "0",
            "KAPPA_VALIDATOR_METRICS_PORT": "0",
            "KAPPA_PRODUCER_METRICS_PORT": "0",
            "KAPPA_REPLAY_METRICS_PORT": "0",
        }
    )
    return env


def _kappa(args: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "kappa"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def _run_all(
    commands: dict[str, tuple[str, ...]], env: dict[str, str]
) -> dict[str, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_kappa, args, env) for name, args in commands.items()}
    return {name: f.result() for name, f in futures.items()}


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in res.stderr.splitlines() if line.startswith("kappa: error: ")]
    assert len(lines) == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return lines[0]


def test_every_command_with_the_stack_down_says_what_is_unreachable(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        f"127.0.0.1:{closed_port()}",
        f"http://127.0.0.1:{closed_port()}/apis/ccompat/v7",
    )
    for name, res in _run_all(COMMANDS, env).items():
        line = _one_line(res)
        assert res.returncode == EXIT_UNREACHABLE, (name, res.stderr[-3000:])
        assert "cannot reach" in line, (name, line)
        assert "kappa stack up" in line, (name, line)


def test_every_command_with_the_registry_alone_down_names_the_registry(
    tmp_path: Path, stack: StackHandle
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/apis/ccompat/v7"
    env = _env(tmp_path, stack.kafka.bootstrap, url)
    needing = {name: COMMANDS[name] for name in NEED_REGISTRY}
    for name, res in _run_all(needing, env).items():
        line = _one_line(res)
        assert res.returncode == EXIT_UNREACHABLE, (name, res.stderr[-3000:])
        assert f"cannot reach the Schema Registry at {url}" in line, (name, line)


def test_bad_flags_name_the_flag_and_start_nothing(tmp_path: Path, stack: StackHandle) -> None:
    env = _env(tmp_path, stack.kafka.bootstrap, stack.registry.url)
    hdfs = f"hdfs://127.0.0.1:{closed_port()}/replay"
    results = _run_all(
        {
            "master": ("aggregate", "--master", "bogus", "--available-now"),
            "trigger": ("aggregate", "--trigger", "abc"),
            "hdfs": ("replay", *RANGE, "--output", hdfs),
        },
        env,
    )
    master = _one_line(results["master"])
    assert results["master"].returncode == EXIT_BAD_SETTING
    assert "bad Spark master 'bogus'" in master
    assert "--master" in master
    trigger = _one_line(results["trigger"])
    assert results["trigger"].returncode == EXIT_BAD_SETTING
    assert "bad trigger" in trigger
    assert "'abc'" in trigger
    unreachable = _one_line(results["hdfs"])
    assert results["hdfs"].returncode == EXIT_UNREACHABLE, results["hdfs"].stderr[-3000:]
    assert "cannot reach HDFS" in unreachable
