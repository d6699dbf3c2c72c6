"""The contract loads, parses and round-trips without a registry."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from fastavro import schemaless_reader

from schemas import SchemaName, WireEncoder, load_schema, parsed_schema
from schemas.rules import REQUIRED_COLUMNS


@pytest.mark.parametrize("name", list(SchemaName))
def test_every_schema_parses(name: SchemaName) -> None:
    assert load_schema(name)["type"] == "record"
    parsed_schema(name)


def test_raw_is_permissive_and_strict_is_strict() -> None:
    raw = {f["name"]: f for f in load_schema(SchemaName.CDR_RAW)["fields"]}
    strict = {f["name"]: f for f in load_schema(SchemaName.CDR)["fields"]}
    for col in REQUIRED_COLUMNS:
        assert raw[col]["type"][0] == "null", col
        assert not (isinstance(strict[col]["type"], list) and "null" in strict[col]["type"]), col
    assert strict["call_type"]["type"]["symbols"] == ["VOICE", "SMS", "DATA"]
    assert strict["event_time"]["type"]["logicalType"] == "timestamp-millis"


def test_wire_encoder_frames_and_round_trips() -> None:
    enc = WireEncoder(parsed_schema(SchemaName.CDR), 1234)
    rec = {
        "call_id": "c1",
        "caller_num": "+94712345678",
        "callee_num": "+94787654321",
        "call_type": "SMS",
        "duration_sec": 0,
        "event_time": datetime(2026, 1, 1, tzinfo=UTC),
        "tower_id": "TOWER_001",
        "signal_strength": 3,
        "data_volume_kb": 0,
    }
    data = enc.encode(rec)
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == 1234
    back = schemaless_reader(io.BytesIO(data[5:]), parsed_schema(SchemaName.CDR), None)
    assert back == rec
    assert enc.encode(rec) == data  # the reused buffer leaves nothing behind


def test_dead_letter_has_what_a_redrive_needs() -> None:
    fields = {f["name"] for f in load_schema(SchemaName.DEAD_LETTER)["fields"]}
    assert {
        "original_key",
        "original_value",
        "failures",
        "suite_version",
        "schema_id",
        "source_topic",
        "source_partition",
        "source_offset",
        "judged_at",
    } <= fields
    json.dumps(load_schema(SchemaName.DEAD_LETTER))
