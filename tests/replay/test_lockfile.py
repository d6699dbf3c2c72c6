"""The lock file's text: the keys replays have always written, read back tolerantly."""

from __future__ import annotations

import json

from replay.exceptions import RangeLockedError
from replay.lockfile import LockHolder


def test_the_lock_file_keeps_its_keys_and_reads_back() -> None:
    me = LockHolder("r1", "host-a", 123, "2026-01-01T06:30:00+00:00")
    text = me.to_json()
    assert text.endswith("}\n")
    assert "\n" not in text[:-1]
    assert list(json.loads(text)) == ["run_id", "host", "pid", "started"]
    assert LockHolder.from_json(text) == me


def test_a_partial_or_unreadable_lock_file_names_what_it_can() -> None:
    assert LockHolder.from_json('{"run_id": "x", "host": "h", "pid": 1}') == LockHolder(
        "x", "h", 1, None
    )
    assert LockHolder.from_json("not json") == LockHolder()
    assert LockHolder.from_json("[1]") == LockHolder()
    err = RangeLockedError("/out/_lock-R", LockHolder("x", "h", 1, None))
    assert "run x on h, pid 1, since None" in str(err)
    assert err.holder.run_id == "x"
