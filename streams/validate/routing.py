"""The pure part of the validator: a micro-batch in, every record routed out.

``validate(batch, ...) -> Routed`` decodes each raw record, runs the GX suite on
the decodable ones as one pandas DataFrame, checks call_id uniqueness against
the dedup state of each record's shard (and earlier records of the same batch,
whatever raw partition they came from; copies are compared by event time), and returns, in input
order, either a strict ``Cdr`` dict (valid) or every failed rule with its column
and observed value (dead letter). Nothing is written anywhere; the job does that.

Hot path: a record written with the CdrRaw schema itself (same fields, same
types: almost all of them) needs no per-column type checks, its decoded dict is
its frame row, and, when the decoder kept value spans, its strict ``Cdr`` bytes
are later copied from its raw bytes (``outputs``). The frame holds the
low-cardinality strings (phone numbers, towers, call types) as categoricals,
so GX's filters and null checks work on integer codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from schemas import SchemaName, load_schema, rules
from schemas.wire import Decoded, Undecodable, signature
from streams.validate.dedup import SHARD
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
    shard: int = SHARD
    """The dedup shard that judges it: its partition of the internal topic keyed by
    call_id (``repartition``); ``SHARD`` where one state holds every call_id."""


class Valid(NamedTuple):
    source: RawRecord
    cdr: dict[str, Any]
    schema_id: int
    spans: tuple[int, ...] | None = None
    """Value spans in ``source.value`` of a CdrRaw-shaped record (see ``compile_reader``):
    its Cdr bytes are then copied, not encoded."""


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
    """(shard, call_id, event time) taken by this batch: added to the dedup
    state only once the batch's transaction commits."""
    gx_seconds: float = 0.0
    decode_seconds: float = 0.0
    forward: list[Any] = field(default_factory=list)
    """Messages for the internal topic keyed by call_id (``repartition``): raw records
    this batch forwards, to be judged in a later batch."""


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


@cache
def raw_signature() -> str:
    """The CdrRaw schema's signature: records written with it need no type checks."""
    return signature(load_schema(SchemaName.CDR_RAW))


def _categorical(values: list[Any]) -> Any:
    """``values`` (strings or None) as a categorical: factorized once, no sorting."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(uniques), validate=False)


def frame_of(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The suite's DataFrame, built column by column (the same dtypes as from records:
    int64, or float64 where a value is null) with the strings as categoricals, so that
    GX's null checks, filters and copies work on integer codes: ``call_id``,
    ``call_type``, ``tower_id``, and the two phone numbers on one shared set of
    categories (so that comparing them compares codes). A null is a missing code, as
    ``isnull`` sees it. The tests hold GX's answers on this frame to its answers on
    plain object columns."""
    columns: dict[str, Any] = {c: [row[c] for row in rows] for c in FRAME_COLUMNS}
    n = len(rows)
    phones = _categorical(columns["caller_num"] + columns["callee_num"])
    columns["caller_num"] = phones[:n]
    columns["callee_num"] = phones[n:]
    for c in ("call_id", "tower_id", "call_type"):
        columns[c] = _categorical(columns[c])
    return pd.DataFrame(columns, copy=False)


def _hot_row(decoded: Decoded) -> dict[str, Any] | None:
    """The frame row of a record written with CdrRaw itself, None if it needs
    ``frame_row``'s checks (another writer schema, or an int beyond int32)."""
    if decoded.signature != raw_signature():
        return None
    rec = decoded.record
    when = rec["event_time"]
    if type(when) is datetime:
        rec["event_time"] = to_millis(when)
    d = rec["duration_sec"]
    s = rec["signal_strength"]
    if (d is not None and not -(2**31) <= d < 2**31) or (
        s is not None and not -(2**31) <= s < 2**31
    ):
        return None
    return rec


# Per input record: its frame row (-1: undecodable), schema id, failures so far
# (None: none), and its value spans when it is CdrRaw-shaped (exact: True). A tuple,
# not a dataclass: one per record on the hot path.
_Judged = tuple[int, int | None, list[Failure] | None, bool, tuple[int, ...] | None]


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
    judged: list[_Judged] = []
    _decode_all(batch, decode, rows, judged)
    t1 = time.perf_counter()
    gx_failed = suite.run(frame_of(rows), judged_at_ms) if rows else {}
    t2 = time.perf_counter()
    routed.decode_seconds = t1 - t0
    routed.gx_seconds = t2 - t1
    dedup_on = suite.config.enabled(rules.DUPLICATE_CALL_ID.name)
    _route(routed, batch, rows, judged, gx_failed=gx_failed, seen=seen if dedup_on else None)
    return routed


def _decode_all(
    batch: Sequence[RawRecord], decode: Decode, rows: list[dict[str, Any]], judged: list[_Judged]
) -> None:
    """Decode ``batch``: one entry of ``judged`` per record, one frame row in ``rows``
    per decoded record."""
    add_row, add_judged = rows.append, judged.append
    for raw in batch:
        got = decode(raw.value)
        if type(got) is Undecodable:
            failure = Failure(rules.UNDECODABLE.name, None, f"{got.kind}: {got.detail}")
            add_judged((-1, got.schema_id, [failure], False, None))
            continue
        assert isinstance(got, Decoded)
        hot = _hot_row(got)
        if hot is not None:
            add_judged((len(rows), got.schema_id, None, True, got.spans))
            add_row(hot)
            continue
        row, checks = frame_row(got)
        add_judged((len(rows), got.schema_id, checks or None, row.keys() == _FRAME_SET, None))
        add_row(row)


def _route(
    routed: Routed,
    batch: Sequence[RawRecord],
    rows: list[dict[str, Any]],
    judged: list[_Judged],
    *,
    gx_failed: dict[int, list[tuple[str, str | None]]],
    seen: Seen | None,
) -> None:
    """Each record valid or dead, by its decoding, GX's failures and (with ``seen``,
    the duplicate rule on) its call_id."""
    taken: set[tuple[int, str]] = set()
    add_valid, add_dead, add_accepted = (
        routed.valid.append,
        routed.dead.append,
        routed.accepted.append,
    )
    for raw, (r, sid, found, exact, spans) in zip(batch, judged, strict=True):
        if r < 0:  # undecodable
            add_dead(Dead(raw, tuple(found or ()), None, sid))
            continue
        failures = found
        row = rows[r]
        gx = gx_failed.get(r)
        if gx:
            failures = failures or []
            missing = {f.column for f in failures if f.rule == rules.SCHEMA.name}
            for rule, column in gx:
                if rule == rules.NOT_NULL.name and column in missing:
                    continue  # already a schema failure
                failures.append(Failure(rule, column, observed_text(_observed(row, column))))
        call_id = row.get("call_id")
        ts = row.get("event_time")
        if (
            seen is not None
            and isinstance(call_id, str)
            and ((raw.shard, call_id) in taken or seen(raw.shard, call_id, ts))
        ):
            failures = failures or []
            failures.append(Failure(rules.DUPLICATE_CALL_ID.name, "call_id", call_id))
        if failures:
            add_dead(Dead(raw, tuple(failures), call_id if isinstance(call_id, str) else None, sid))
            continue
        assert isinstance(call_id, str)
        taken.add((raw.shard, call_id))
        add_accepted((raw.shard, call_id, row["event_time"]))
        # A CdrRaw row holds exactly the Cdr's fields: it becomes the Cdr as it is.
        cdr = row if exact else {c: row[c] for c in FRAME_COLUMNS}
        if cdr["data_volume_kb"] is None:
            cdr["data_volume_kb"] = 0
        add_valid(Valid(raw, cdr, sid if sid is not None else -1, spans))


def _observed(row: dict[str, Any], column: str | None) -> Any:
    if column is None:
        return None
    value = row.get(column)
    if column == "event_time" and isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC)
    return value
