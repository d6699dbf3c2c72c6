"""The pure part of the validator: a micro-batch in, every record routed out.

``validate(batch, ...) -> Routed`` decodes each raw record, runs the GX suite on
the decodable ones as one pandas DataFrame, checks call_id uniqueness against
the dedup state (and earlier records of the same batch), and returns, in input
order, either a strict ``Cdr`` dict (valid) or every failed rule with its column
and observed value (dead letter). Nothing is written anywhere; the job does that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pandas as pd

from schemas import rules
from schemas.wire import Decoded, Undecodable
from streams.validate.suite import FRAME_COLUMNS, CdrSuite, Failure

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_STR_COLUMNS = frozenset({"call_id", "caller_num", "callee_num", "call_type", "tower_id"})
_INT_COLUMNS = frozenset({"duration_sec", "signal_strength", "data_volume_kb", "event_time"})
_TYPES: tuple[tuple[str, type], ...] = tuple(
    (c, str if c in _STR_COLUMNS else int) for c in FRAME_COLUMNS
)
_FRAME_SET = frozenset(FRAME_COLUMNS)
_INT32_COLUMNS = frozenset({"duration_sec", "signal_strength"})  # "int" in the strict Cdr
_INT32_RANGE = range(-(2**31), 2**31)
_REQUIRED = frozenset(rules.REQUIRED_COLUMNS)
_OBSERVED_MAX = 200

Decode = Callable[[bytes | None], Decoded | Undecodable]
Seen = Callable[[int, str, int | None], bool]


class RawRecord(NamedTuple):
    """A consumed raw message: its coordinates, timestamp, key and value bytes (a named
    tuple: one is built per consumed message, at half a frozen dataclass's cost)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Valid:
    source: RawRecord
    cdr: dict[str, Any]
    schema_id: int


@dataclass(frozen=True, slots=True)
class Dead:
    source: RawRecord
    failures: tuple[Failure, ...]
    call_id: str | None
    schema_id: int | None

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.rule for f in self.failures))


@dataclass
class Routed:
    valid: list[Valid] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)
    accepted: list[tuple[int, str, int]] = field(default_factory=list)
    """(partition, call_id, timestamp) taken by this batch: added to the dedup
    state only once the batch's transaction commits."""
    gx_seconds: float = 0.0
    decode_seconds: float = 0.0


def observed_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _OBSERVED_MAX else text[:_OBSERVED_MAX] + "..."


def to_millis(value: Any) -> Any:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (when - _EPOCH) // _MS
    return value


def frame_row(decoded: Decoded) -> tuple[dict[str, Any], list[Failure]]:
    """The frame row of a decoded record, and its schema failures (missing or mistyped
    columns, which are then left null so the suite does not judge them twice).

    The decoded dict itself becomes the row (event_time turned into epoch ms): with the
    CdrRaw writer schema every value already has its type, so the common path is one
    ``type() is`` check per column."""
    rec = decoded.record
    failures: list[Failure] = []
    if not _FRAME_SET.issubset(decoded.writer_fields):
        for col in FRAME_COLUMNS:
            if col not in decoded.writer_fields:
                if col in _REQUIRED:
                    failures.append(
                        Failure(rules.SCHEMA.name, col, "missing from the writer schema")
                    )
                rec[col] = None
    for col, kind in _TYPES:
        value = rec.get(col)
        if value is None:
            continue
        if type(value) is kind:
            if col in _INT32_COLUMNS and value not in _INT32_RANGE:
                failures.append(Failure(rules.SCHEMA.name, col, f"{value} does not fit an int"))
                rec[col] = None
            continue
        if type(value) is datetime and col == "event_time":
            when = value if value.tzinfo else value.replace(tzinfo=UTC)
            rec[col] = (when - _EPOCH) // _MS
            continue
        if col in _INT_COLUMNS and isinstance(value, int) and not isinstance(value, bool):
            rec[col] = int(value)
            continue
        if isinstance(value, str) and kind is str:
            rec[col] = str(value)
            continue
        failures.append(
            Failure(rules.SCHEMA.name, col, f"{type(value).__name__}: {observed_text(value)}")
        )
        rec[col] = None
    return rec, failures


def frame_of(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The suite's DataFrame, built column by column (the same dtypes as from records:
    int64, float64 where a value is null, object strings) except ``call_type``, a
    category: its domain check and the row conditions on it then compare codes."""
    columns: dict[str, Any] = {c: [row[c] for row in rows] for c in FRAME_COLUMNS}
    columns["call_type"] = pd.Categorical(columns["call_type"])
    return pd.DataFrame(columns, copy=False)


def validate(
    batch: Sequence[RawRecord],
    *,
    decode: Decode,
    suite: CdrSuite,
    seen: Seen,
    judged_at_ms: int,
) -> Routed:
    """Route every record of ``batch``; see the module doc."""
    routed = Routed()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    # Per input record: its frame row (-1: undecodable), schema id and failures so far.
    judged: list[tuple[int, int | None, list[Failure]]] = []
    for raw in batch:
        got = decode(raw.value)
        if isinstance(got, Undecodable):
            failure = Failure(rules.UNDECODABLE.name, None, f"{got.kind}: {got.detail}")
            judged.append((-1, got.schema_id, [failure]))
            continue
        row, failures = frame_row(got)
        judged.append((len(rows), got.schema_id, failures))
        rows.append(row)
    t1 = time.perf_counter()
    gx_failed = suite.run(frame_of(rows), judged_at_ms) if rows else {}
    t2 = time.perf_counter()
    routed.decode_seconds = t1 - t0
    routed.gx_seconds = t2 - t1

    dedup_on = suite.config.enabled(rules.DUPLICATE_CALL_ID.name)
    taken: set[tuple[int, str]] = set()
    for raw, (r, sid, failures) in zip(batch, judged, strict=True):
        if r < 0:  # undecodable
            routed.dead.append(Dead(raw, tuple(failures), None, sid))
            continue
        row = rows[r]
        gx = gx_failed.get(r)
        if gx:
            missing = {f.column for f in failures if f.rule == rules.SCHEMA.name}
            for rule, column in gx:
                if rule == rules.NOT_NULL.name and column in missing:
                    continue  # already a schema failure
                failures.append(Failure(rule, column, observed_text(_observed(row, column))))
        call_id = row.get("call_id")
        ts = raw.timestamp_ms
        if (
            dedup_on
            and isinstance(call_id, str)
            and ((raw.partition, call_id) in taken or seen(raw.partition, call_id, ts))
        ):
            failures.append(Failure(rules.DUPLICATE_CALL_ID.name, "call_id", call_id))
        if failures:
            routed.dead.append(
                Dead(raw, tuple(failures), call_id if isinstance(call_id, str) else None, sid)
            )
            continue
        assert isinstance(call_id, str)
        taken.add((raw.partition, call_id))
        when = ts if ts is not None else row["event_time"]
        routed.accepted.append((raw.partition, call_id, when))
        # A CdrRaw row holds exactly the Cdr's fields: it becomes the Cdr as it is.
        cdr = row if row.keys() == _FRAME_SET else {c: row[c] for c in FRAME_COLUMNS}
        if cdr["data_volume_kb"] is None:
            cdr["data_volume_kb"] = 0
        routed.valid.append(Valid(raw, cdr, sid if sid is not None else -1))
    return routed


def _observed(row: dict[str, Any], column: str | None) -> Any:
    if column is None:
        return None
    value = row.get(column)
    if column == "event_time" and isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC)
    return value
