"""``kappa aggregate``: clear messages, no tracebacks, for what a user gets wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.ports import closed_port


def _kappa(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "kappa"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("KAPPA_")}
    e["KAPPA_STATE_DIR"] = str(tmp_path / "state")
    return e


def test_no_broker_is_a_clear_message(env: dict[str, str]) -> None:
    env["KAPPA_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{closed_port()}"
    res = _kappa("aggregate", "--available-now", env=env)
    assert res.returncode == 3  # kappa.exceptions.EXIT_UNREACHABLE
    assert "cannot reach Kafka" in res.stderr
    assert "kappa stack up" in res.stderr
    assert "Traceback" not in res.stderr


def test_show_without_output_is_a_clear_message(env: dict[str, str], tmp_path: Path) -> None:
    res = _kappa("aggregate", "--show", "--output", str(tmp_path / "nothing"), env=env)
    assert res.returncode != 0
    assert "no aggregation output" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_setting_names_the_variable(env: dict[str, str]) -> None:
    env["KAPPA_AGGREGATE_SHUFFLE_PARTITIONS"] = "0"
    res = _kappa("aggregate", "--show", env=env)
    assert res.returncode == 2
    assert "KAPPA_AGGREGATE_SHUFFLE_PARTITIONS" in res.stderr
