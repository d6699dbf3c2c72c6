"""One replay per range at a time: a second run is refused and destroys nothing; a
lock left by a dead run is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from replay import runner
from replay.exceptions import RangeLockedError
from replay.fs import LOCK_PREFIX, STAGING_PREFIX, HadoopFs
from replay.plan import range_id
from tests.replay.conftest import DAY, CdrTopic, cdr, minutes, settings_for

pytestmark = [pytest.mark.spark]

T1, T2 = DAY + minutes(60), DAY + minutes(120)


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def test_a_held_lock_refuses_a_second_holder_and_is_gone_after(
    spark: SparkSession, tmp_path: Path
) -> None:
    fs = HadoopFs(spark, str(tmp_path))
    lock = tmp_path / f"{LOCK_PREFIX}R"
    with fs.lock("R", "first") as url:
        assert url.endswith(f"{LOCK_PREFIX}R")
        holder = json.loads(lock.read_text())
        assert holder["run_id"] == "first"
        assert holder["pid"] == os.getpid()
        with pytest.raises(RangeLockedError, match="run first") as caught, fs.lock("R", "second"):
            pass
        assert str(lock) in str(caught.value)
        assert json.loads(lock.read_text())["run_id"] == "first"  # the refusal left it alone
        with fs.lock("other range", "third"):  # other ranges are free
            pass
    assert not lock.exists()


def test_a_lock_of_a_dead_run_on_this_host_is_taken_over(
    spark: SparkSession, tmp_path: Path
) -> None:
    lock = tmp_path / f"{LOCK_PREFIX}R"
    dead = {"run_id": "crashed", "host": socket.gethostname(), "pid": _dead_pid()}
    lock.write_text(json.dumps(dead))
    with HadoopFs(spark, str(tmp_path)).lock("R", "next"):
        assert json.loads(lock.read_text())["run_id"] == "next"
    assert not lock.exists()


def test_a_lock_of_another_host_is_reported_not_taken(spark: SparkSession, tmp_path: Path) -> None:
    lock = tmp_path / f"{LOCK_PREFIX}R"
    lock.write_text(json.dumps({"run_id": "elsewhere", "host": "some-other-host", "pid": 1}))
    with (
        pytest.raises(RangeLockedError, match="some-other-host"),
        HadoopFs(spark, str(tmp_path)).lock("R", "mine"),
    ):
        pass
    assert json.loads(lock.read_text())["run_id"] == "elsewhere"


@pytest.mark.integration
def test_a_replay_of_a_locked_range_keeps_the_running_one_s_staging(
    cdr_topic: Callable[..., CdrTopic], spark: SparkSession, tmp_path: Path, stack: Any
) -> None:
    t = cdr_topic(partitions=1)
    t.write(cdr(i, DAY + minutes(50 + i)) for i in range(90))
    s = settings_for(stack, tmp_path / "replay")
    rid = range_id(T1, T2)
    root = tmp_path / "replay"
    root.mkdir()
    # A replay of the range that is running: its lock and its staging folder.
    (root / f"{LOCK_PREFIX}{rid}").write_text(
        json.dumps({"run_id": "running", "host": socket.gethostname(), "pid": os.getpid()})
    )
    staging = root / f"{STAGING_PREFIX}{rid}-running"
    (staging / "cdr").mkdir(parents=True)
    with pytest.raises(RangeLockedError, match="another replay of this range is running"):
        runner.replay_range(s, T1, T2, topic=t.name, spark=spark)
    assert (staging / "cdr").is_dir()
    assert not (root / rid).exists()
