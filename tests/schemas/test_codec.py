"""The compiled encoder writes exactly fastavro's bytes."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import SchemaName, load_schema, parsed_schema
from schemas.codec import compile_encoder

opt_text = st.none() | st.text(max_size=40)
opt_int = st.none() | st.integers(-(2**31), 2**31 - 1)
opt_long = st.none() | st.integers(-(2**63), 2**63 - 1)

raw_records = st.fixed_dictionaries(
    {
        "call_id": opt_text,
        "caller_num": opt_text,
        "callee_num": opt_text,
        "call_type": opt_text,
        "duration_sec": opt_int,
        "event_time": st.none()
        | st.integers(-(2**50), 2**50)
        | st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ),
        "tower_id": opt_text,
        "signal_strength": opt_int,
        "data_volume_kb": opt_long,
    }
)


def fastavro_bytes(name: SchemaName, record: dict) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parsed_schema(name), record)
    return buf.getvalue()


@settings(max_examples=400, deadline=None)
@given(raw_records)
def test_raw_records_match_fastavro(record: dict) -> None:
    enc = compile_encoder(load_schema(SchemaName.CDR_RAW), frozenset({"call_id"}))
    assert enc(record) == fastavro_bytes(SchemaName.CDR_RAW, record)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "call_id": st.text(max_size=40),
            "caller_num": st.text(max_size=15),
            "callee_num": st.text(max_size=15),
            "call_type": st.sampled_from(["VOICE", "SMS", "DATA"]),
            "duration_sec": st.integers(0, 7200),
            "event_time": st.integers(0, 2**45),
            "tower_id": st.text(max_size=10),
            "signal_strength": st.integers(1, 5),
            "data_volume_kb": st.integers(0, 2**40),
        }
    )
)
def test_strict_records_match_fastavro(record: dict) -> None:
    enc = compile_encoder(load_schema(SchemaName.CDR))
    assert enc(record) == fastavro_bytes(SchemaName.CDR, record)


def test_memoised_strings_stay_correct() -> None:
    enc = compile_encoder(load_schema(SchemaName.CDR_RAW))
    rec = {
        "call_id": "a",
        "caller_num": "+94712345678",
        "callee_num": None,
        "call_type": "SMS",
        "duration_sec": 0,
        "event_time": 0,
        "tower_id": "T",
        "signal_strength": 1,
        "data_volume_kb": 0,
    }
    first = enc(rec)
    assert enc(dict(rec)) == first == fastavro_bytes(SchemaName.CDR_RAW, rec)


def test_nested_schemas_fall_back_to_fastavro() -> None:
    schema = load_schema(SchemaName.DEAD_LETTER)
    enc = compile_encoder(schema)
    rec = {
        "original_key": b"k",
        "original_value": None,
        "call_id": None,
        "failures": [{"rule": "r", "column": None, "observed": "x"}],
        "suite_version": "1",
        "schema_id": None,
        "source_topic": "t",
        "source_partition": 0,
        "source_offset": 5,
        "source_timestamp": None,
        "judged_at": 1,
    }
    assert enc(rec) == fastavro_bytes(SchemaName.DEAD_LETTER, rec)
