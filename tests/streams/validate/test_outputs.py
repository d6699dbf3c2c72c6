"""Routed records as Kafka messages: what a dead letter keeps, and that no input stops the job."""

from __future__ import annotations

import io
import json

from fastavro import schemaless_reader

from schemas import SchemaName, WireEncoder, load_schema, parsed_schema
from streams.validate import headers as hdr
from streams.validate.encoding import encode_routed
from streams.validate.outputs import Outputs
from streams.validate.routing import RawRecord, Routed, Valid
from tests.fixtures.validate import NOW_MS, Judge, Wire, valid_record


def _outputs() -> Outputs:
    return Outputs(
        "valid",
        "dlq",
        WireEncoder(load_schema(SchemaName.CDR), 3),
        WireEncoder(load_schema(SchemaName.DEAD_LETTER), 4),
    )


def _read(name: SchemaName, value: bytes) -> dict:
    rec = schemaless_reader(io.BytesIO(value[5:]), parsed_schema(name), None)
    assert isinstance(rec, dict)
    return rec


def test_dead_letter_keeps_bytes_coordinates_and_every_failure(judge: Judge) -> None:
    rec = valid_record(signal_strength=0, duration_sec=-1)
    routed = judge([rec])
    encoded = encode_routed(_outputs(), routed, "7", NOW_MS)
    valid, dead = encoded.valid, encoded.dead
    assert not valid
    ((value, key, ts, headers),) = dead
    assert key == rec["call_id"].encode()
    assert ts == NOW_MS - 1000
    assert hdr.source_of(headers) == ("raw", 0, 0)
    letter = _read(SchemaName.DEAD_LETTER, value)
    assert letter["original_key"] == key
    assert letter["suite_version"] == "7"
    assert {(f["rule"], f["observed"]) for f in letter["failures"]} == {
        ("signal_range", "0"),
        ("duration_range", "-1"),
    }


def test_valid_record_is_strict_cdr_with_key_timestamp_and_source(judge: Judge) -> None:
    rec = valid_record()
    encoded = encode_routed(_outputs(), judge([rec]), "1", NOW_MS)
    valid, dead = encoded.valid, encoded.dead
    assert not dead
    ((value, key, ts, headers),) = valid
    assert value[:5] == b"\x00\x00\x00\x00\x03"
    cdr = _read(SchemaName.CDR, value)
    assert cdr["call_id"] == rec["call_id"]
    assert key == rec["call_id"].encode()
    assert ts == NOW_MS - 1000
    assert hdr.source_of(headers) == ("raw", 0, 0)


def test_a_schema_id_beyond_int32_does_not_stop_the_job(judge: Judge) -> None:
    pill = b"\x00\xee\x8b\x1a\x7e" + b"random tail"
    routed = judge([pill])
    assert routed.dead[0].schema_id is not None
    assert routed.dead[0].schema_id > 2**31
    dead = encode_routed(_outputs(), routed, "1", NOW_MS).dead
    letter = _read(SchemaName.DEAD_LETTER, dead[0][0])
    assert letter["schema_id"] is None
    assert letter["failures"][0]["rule"] == "undecodable"


def test_a_record_the_strict_schema_cannot_hold_becomes_a_schema_dead_letter() -> None:
    raw = RawRecord("raw", 1, 5, NOW_MS, b"k", b"v")
    bad = dict(
        valid_record(), call_type="VIDEO"
    )  # routing never lets this through; belt and braces
    routed = Routed(valid=[Valid(raw, bad, 9)], accepted=[(1, bad["call_id"], NOW_MS)])
    encoded = encode_routed(_outputs(), routed, "1", NOW_MS)
    valid, dead = encoded.valid, encoded.dead
    assert not valid
    assert not routed.accepted
    letter = _read(SchemaName.DEAD_LETTER, dead[0][0])
    assert letter["failures"][0]["rule"] == "schema"
    assert letter["source_offset"] == 5


def test_a_foreign_writer_with_a_long_duration_fails_schema(judge: Judge, wire: Wire) -> None:
    schema = {
        "type": "record",
        "name": "Wide",
        "namespace": "test",
        "fields": [
            {
                "name": c,
                "type": "long"
                if c in ("duration_sec", "signal_strength", "event_time", "data_volume_kb")
                else "string",
            }
            for c in (
                "call_id",
                "caller_num",
                "callee_num",
                "call_type",
                "duration_sec",
                "event_time",
                "tower_id",
                "signal_strength",
                "data_volume_kb",
            )
        ],
    }
    wire.decoder._schemas.pop(77, None)
    wire.decoder._registry._texts[77] = json.dumps(schema)  # type: ignore[attr-defined]
    rec = valid_record(duration_sec=2**40)
    routed = judge([WireEncoder(schema, 77).encode(rec)])
    (dead,) = routed.dead
    assert ("schema", "duration_sec") in {(f.rule, f.column) for f in dead.failures}
