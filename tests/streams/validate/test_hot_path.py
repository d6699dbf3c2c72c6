"""The validator's hot path judges and writes exactly what the plain path does.

The job decodes with the compiled reader in epoch-ms mode with value spans, builds
categorical frame columns and copies valid records' bytes into Cdr; the plain path
(fastavro values, datetimes, the encoder) is the reference. Generated traffic with
every fault kind, duplicates and late records goes through both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from producers.clock import SimulatedClock
from producers.generator import CdrGenerator, FaultRates
from schemas import SchemaName, WireEncoder, load_schema
from schemas.wire import WireDecoder
from streams.validate.dedup import DedupState
from streams.validate.encoding import encode_routed
from streams.validate.outputs import Outputs
from streams.validate.routing import RawRecord, Routed, frame_of, frame_row, validate
from streams.validate.suite import FRAME_COLUMNS, CdrSuite
from tests.fixtures.validate import NOW_MS, Wire


def _batch(wire: Wire, seed: int, count: int) -> list[RawRecord]:
    gen = CdrGenerator(
        seed=seed,
        clock=SimulatedClock(
            start=datetime.fromtimestamp((NOW_MS - 3_600_000) / 1000, UTC), speed=1.0, rate=1.0
        ),
        encode=wire.raw.encode,
        encode_legacy=wire.legacy.encode,
        faults=FaultRates(bad=0.3, duplicate=0.05, late=0.05),
        fast_header=wire.raw.header,
    )
    out = []
    for i in range(count):
        g = gen.next()
        out.append(RawRecord("raw", i % 3, i, g.timestamp_ms, g.key, g.value))
    return out


def _route(batch: list[RawRecord], decoder: WireDecoder, suite: CdrSuite) -> Routed:
    routed = Routed()
    state = DedupState(24 * 3600_000)
    for start in range(0, len(batch), 500):  # several batches: dedup across them too
        part = validate(
            batch[start : start + 500],
            decode=decoder.decode,
            suite=suite,
            seen=state.seen,
            judged_at_ms=NOW_MS,
        )
        state.add_many(part.accepted)
        routed.valid += part.valid
        routed.dead += part.dead
        routed.accepted += part.accepted
    return routed


def _outputs() -> Outputs:
    return Outputs(
        "valid",
        "dlq",
        WireEncoder(load_schema(SchemaName.CDR), 3),
        WireEncoder(load_schema(SchemaName.DEAD_LETTER), 4),
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_hot_path_routes_and_writes_what_the_plain_path_does(
    wire: Wire, gx_suite: CdrSuite, seed: int
) -> None:
    batch = _batch(wire, seed, 2000)
    hot = WireDecoder(wire.decoder._registry, millis=True, spans=True)
    plain = _route(batch, wire.decoder, gx_suite)
    fast = _route(batch, hot, gx_suite)
    assert sum(v.spans is not None for v in fast.valid) > 0.9 * len(fast.valid)
    assert [(v.source, v.cdr) for v in fast.valid] == [(v.source, v.cdr) for v in plain.valid]
    assert [(d.source, d.failures, d.call_id, d.schema_id) for d in fast.dead] == [
        (d.source, d.failures, d.call_id, d.schema_id) for d in plain.dead
    ]
    assert fast.accepted == plain.accepted
    assert len({d.rules for d in plain.dead}) > 8  # every kind of fault was there
    # The copied Cdr bytes are the encoder's bytes.
    assert encode_routed(_outputs(), fast, "1", NOW_MS) == encode_routed(
        _outputs(), plain, "1", NOW_MS
    )


def test_categorical_frame_is_judged_like_plain_columns(wire: Wire, gx_suite: CdrSuite) -> None:
    rows: list[dict[str, Any]] = []
    for raw in _batch(wire, 3, 3000):
        got = wire.decoder.decode(raw.value)
        if hasattr(got, "record"):
            rows.append(frame_row(got)[0])  # type: ignore[arg-type]
    plain = pd.DataFrame({c: [r[c] for r in rows] for c in FRAME_COLUMNS})
    assert plain["caller_num"].dtype == object
    expected = gx_suite.run(plain, NOW_MS)
    assert len(expected) > 300
    assert gx_suite.run(frame_of(rows), NOW_MS) == expected
