"""The compiled encoder writes exactly fastavro's bytes; the compiled reader reads exactly
fastavro's values, or declines."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import SchemaName, load_schema, parsed_schema
from schemas.codec import compile_encoder, compile_reader

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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


# -- the compiled reader ------------------------------------------------------------------


def fastavro_read(name: SchemaName, body: bytes) -> dict | None:
    """fastavro's record, or None when it fails or leaves bytes unread."""
    buf = io.BytesIO(body)
    try:
        record = schemaless_reader(buf, parsed_schema(name), None)
    except Exception:
        return None
    return record if buf.tell() == len(body) else None


def compiled_read(name: SchemaName, body: bytes, *, logical: bool = True) -> dict | None:
    read = compile_reader(load_schema(name), logical=logical)
    assert read is not None
    try:
        return read(body)
    except (ValueError, IndexError):
        return None


def _millis(record: dict) -> dict:
    when = record["event_time"]
    if isinstance(when, datetime):
        record = {**record, "event_time": (when - EPOCH) // timedelta(milliseconds=1)}
    return record


@settings(max_examples=400, deadline=None)
@given(raw_records)
def test_reader_reads_what_fastavro_reads(record: dict) -> None:
    body = fastavro_bytes(SchemaName.CDR_RAW, record)
    expected = fastavro_read(SchemaName.CDR_RAW, body)
    got = compiled_read(SchemaName.CDR_RAW, body)
    # The reader may decline (then fastavro is asked); it never reads another value.
    assert got is None or got == expected
    if expected is not None and got is None:
        # Only a timestamp outside datetime's range may be declined.
        assert expected["event_time"] is not None
    millis = compiled_read(SchemaName.CDR_RAW, body, logical=False)
    assert millis == (None if got is None else _millis(got))


@settings(max_examples=300, deadline=None)
@given(raw_records, st.data())
def test_reader_never_accepts_what_fastavro_rejects(record: dict, data: st.DataObject) -> None:
    """Damaged bodies (cut, extended, bytes flipped): whatever the compiled reader
    accepts, fastavro reads to the same value, using every byte."""
    body = bytearray(fastavro_bytes(SchemaName.CDR_RAW, record))
    op = data.draw(st.sampled_from(["cut", "extend", "flip"]))
    if op == "cut" and body:
        del body[data.draw(st.integers(0, len(body) - 1)) :]
    elif op == "extend":
        body += data.draw(st.binary(min_size=1, max_size=8))
    elif body:
        for _ in range(data.draw(st.integers(1, 3))):
            body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    got = compiled_read(SchemaName.CDR_RAW, bytes(body))
    if got is not None:
        assert got == fastavro_read(SchemaName.CDR_RAW, bytes(body))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_reader_on_random_bytes(body: bytes) -> None:
    for name in (SchemaName.CDR_RAW, SchemaName.CDR):
        got = compiled_read(name, body)
        if got is not None:
            assert got == fastavro_read(name, body)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "call_id": st.text(max_size=40),
            "caller_num": st.text(max_size=15),
            "callee_num": st.text(max_size=15),
            "call_type": st.sampled_from(["VOICE", "SMS", "DATA"]),
            "duration_sec": st.integers(-(2**31), 2**31 - 1),
            "event_time": st.integers(-(2**45), 2**45),
            "tower_id": st.text(max_size=10),
            "signal_strength": st.integers(-(2**31), 2**31 - 1),
            "data_volume_kb": st.integers(-(2**63), 2**63 - 1),
        }
    )
)
def test_reader_reads_strict_records(record: dict) -> None:
    body = fastavro_bytes(SchemaName.CDR, record)
    assert compiled_read(SchemaName.CDR, body) == fastavro_read(SchemaName.CDR, body)


def test_reader_offset_skips_the_wire_header() -> None:
    rec = {
        "call_id": "a",
        "caller_num": None,
        "callee_num": "+94712345678",
        "call_type": "VOICE",
        "duration_sec": 7,
        "event_time": 1_700_000_000_000,
        "tower_id": None,
        "signal_strength": 3,
        "data_volume_kb": None,
    }
    read = compile_reader(load_schema(SchemaName.CDR_RAW), offset=5, logical=False)
    assert read is not None
    assert read(b"\x00\x00\x00\x00\x07" + fastavro_bytes(SchemaName.CDR_RAW, rec)) == rec


def test_reader_declines_schemas_it_cannot_compile() -> None:
    assert compile_reader(load_schema(SchemaName.DEAD_LETTER)) is None


@settings(max_examples=300, deadline=None)
@given(raw_records)
def test_reader_spans_hold_each_value_as_encoded(record: dict) -> None:
    body = fastavro_bytes(SchemaName.CDR_RAW, record)
    read = compile_reader(load_schema(SchemaName.CDR_RAW), logical=False, spans=True)
    assert read is not None
    try:
        got, spans = read(body)
    except (ValueError, IndexError):
        return
    for i, field in enumerate(load_schema(SchemaName.CDR_RAW)["fields"]):
        value = got[field["name"]]
        start, end = spans[2 * i], spans[2 * i + 1]
        if value is None:
            assert start == end
            continue
        one = {"type": "record", "name": "One", "fields": [{"name": "x", "type": field["type"][1]}]}
        assert body[start:end] == compile_encoder(one)({"x": value})
