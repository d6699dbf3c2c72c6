"""The job's own window clock and checkpoint shape (no Spark)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.aggregate.exceptions import BadSettingError, IncompatibleCheckpointError
from streams.aggregate.state import (
    SHAPE_FILE,
    START,
    check_shape,
    committed_stamp,
    move_aside,
)
from streams.aggregate.transforms import interval_ms


def test_interval_ms_reads_spark_interval_strings() -> None:
    assert interval_ms("10 minutes") == 600_000
    assert interval_ms("1 hour 30 minutes") == 5_400_000
    assert interval_ms("interval 45 seconds") == 45_000
    with pytest.raises(BadSettingError):
        interval_ms("ten minutes")
    with pytest.raises(BadSettingError):
        interval_ms("10 fortnights")


def test_the_watermark_follows_the_largest_event_time_and_never_moves_back() -> None:
    first = START.advanced(0, 1_000_000, 600_000)
    assert (first.max_event_ms, first.watermark_ms) == (1_000_000, 400_000)
    older = first.advanced(1, 900_000, 600_000)  # an out-of-order batch
    assert (older.max_event_ms, older.watermark_ms) == (1_000_000, 400_000)
    assert START.advanced(0, None, 600_000).watermark_ms == 0  # undecodable rows only


def test_a_new_checkpoint_is_marked_and_an_old_shape_is_refused(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    check_shape(fresh)
    check_shape(fresh)  # its own mark is accepted
    assert json.loads((fresh / SHAPE_FILE).read_text())["query"] == "aggregate"

    old = tmp_path / "old"
    (old / "offsets").mkdir(parents=True)
    (old / "offsets" / "0").write_text("v1\n")
    with pytest.raises(IncompatibleCheckpointError) as err:
        check_shape(old)
    text = str(err.value)
    assert str(old) in text
    assert "--reset-checkpoint" in text
    assert "\n" not in text


def test_move_aside_renames_the_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    (ckpt / "offsets").mkdir(parents=True)
    moved = move_aside(ckpt, datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    assert moved == tmp_path / "ckpt.reset-20260301T100000Z"
    assert not ckpt.exists()
    assert (moved / "offsets").is_dir()
    assert move_aside(ckpt) is None
    assert committed_stamp(moved) is None
