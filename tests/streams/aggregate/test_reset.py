"""A checkpoint of an older query shape: one clear line, and --reset-checkpoint starts over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from kappa.settings import AggregateSettings, StackSettings
from streams.aggregate import job
from streams.aggregate.checkpoint import LATE_FILE, SHAPE_FILE, Checkpoint
from streams.aggregate.exceptions import IncompatibleCheckpointError
from streams.aggregate.paths import Paths

pytestmark = [pytest.mark.integration]


def _old_checkpoint(path: Path) -> None:
    """What the union-of-three-scans query left: offsets, commits, state, no shape mark."""
    for sub in ("offsets", "commits", "state/0"):
        (path / sub).mkdir(parents=True)
    (path / "metadata").write_text('{"id":"0b0c"}\n')
    (path / "offsets" / "0").write_text('v1\n{"batchWatermarkMs":0}\n{"t":{"0":5}}\n')


def test_old_checkpoint_stops_the_cli_with_one_line_naming_it(
    stack: Any, topic: Any, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    _old_checkpoint(ckpt)
    env = {
        **os.environ,
        "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
        "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
        "KAPPA_AGGREGATE_CHECKPOINT_DIR": str(ckpt),
        "KAPPA_AGGREGATE_OUTPUT": str(tmp_path / "out"),
        "KAPPA_AGGREGATE_METRICS_PORT": "0",
        **{
            f"KAPPA_TOPIC_{t}": topic(partitions=1) for t in ("VALID", "BILLING", "NETWORK", "LATE")
        },
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kappa"), "aggregate", "--available-now"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("kappa: error:")]
    assert len(lines) == 1, done.stderr
    assert str(ckpt) in lines[0]
    assert "--reset-checkpoint" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.spark
def test_reset_moves_the_checkpoint_and_its_tables_aside(
    spark: SparkSession, tmp_path: Path
) -> None:
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    _old_checkpoint(ckpt)
    (out / "billing_realtime").mkdir(parents=True)
    (out / "billing_realtime" / "batch-0-part-0.parquet").write_bytes(b"x")
    settings = AggregateSettings(checkpoint_dir=str(ckpt), output=str(out))
    paths = Paths.resolve(settings, StackSettings())
    report = job.reset(spark, paths)
    assert report.checkpoint is not None
    moved = Path(report.checkpoint)
    assert moved.name.startswith("ckpt.reset-")
    assert (moved / "offsets" / "0").exists()
    assert len(report.tables) == 1
    assert Path(report.tables[0], "batch-0-part-0.parquet").exists()
    assert not (out / "billing_realtime").exists()
    Checkpoint(spark, str(ckpt)).check_shape()  # a fresh checkpoint of this shape
    assert (ckpt / SHAPE_FILE).exists()


@pytest.mark.spark
@pytest.mark.parametrize(
    ("name", "text"),
    [
        (SHAPE_FILE, "not json\n"),
        (SHAPE_FILE, "[1, 2]\n"),
        (LATE_FILE, '{"batch": "seven"}\n'),
        (LATE_FILE, ""),
    ],
)
def test_a_damaged_marker_file_is_one_error_naming_it(
    spark: SparkSession, tmp_path: Path, name: str, text: str
) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / name).write_text(text)
    checkpoint = Checkpoint(spark, str(ckpt))
    read = checkpoint.check_shape if name == SHAPE_FILE else checkpoint.captured_through
    with pytest.raises(IncompatibleCheckpointError) as caught:
        read()
    assert f"{ckpt}/{name} is damaged" in str(caught.value)
    assert "--reset-checkpoint" in str(caught.value)
