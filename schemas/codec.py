"""A specialised Avro binary encoder and reader for flat records.

fastavro's ``schemaless_writer`` walks the schema for every record; for the
producer's hot path that walk costs more than building the record. This module
compiles a flat record schema (primitives, enums, logical timestamps and
``["null", T]`` unions) once into a list of per-field encoders, and memoises
the encoded bytes of repeated string values (phone numbers, towers, call
types). Its output is byte-for-byte what fastavro writes; the tests prove it
on generated records. Schemas it cannot compile fall back to fastavro.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastavro import parse_schema, schemaless_writer

FieldEncoder = Callable[[Any], bytes]
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_MEMO_LIMIT = 50_000
_EPOCH_MS_PER_S = 1000


def varint(n: int) -> bytes:
    """Avro's zig-zag varint of a signed 64-bit integer."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return bytes((z,))
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL = [varint(i) for i in range(-64, 8192)]


def _long(n: int) -> bytes:
    if -64 <= n < 8192:
        return _SMALL[n + 64]
    return varint(n)


def _string_encoder() -> FieldEncoder:
    memo: dict[str, bytes] = {}

    def enc(value: str) -> bytes:
        hit = memo.get(value)
        if hit is not None:
            return hit
        raw = value.encode()
        out = _long(len(raw)) + raw
        if len(memo) < _MEMO_LIMIT:
            memo[value] = out
        return out

    return enc


def _unique_string(value: str) -> bytes:
    raw = value.encode()
    return _long(len(raw)) + raw


def _bytes(value: bytes) -> bytes:
    return _long(len(value)) + value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)  # noqa: DTZ001 - mirrors fastavro for naive values


def _timestamp_millis(value: int | datetime) -> bytes:
    if isinstance(value, datetime):
        delta = value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)
        value = (delta.days * 86_400 + delta.seconds) * _EPOCH_MS_PER_S + delta.microseconds // 1000
    return varint(value)


def _boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def _primitive(t: Any, unique: bool) -> FieldEncoder | None:
    if isinstance(t, dict):
        logical = t.get("logicalType")
        base = t.get("type")
        if base == "long" and logical == "timestamp-millis":
            return _timestamp_millis
        if base == "enum":
            index = {s: _long(i) for i, s in enumerate(t["symbols"])}
            return index.__getitem__
        if logical is None and isinstance(base, str):
            return _primitive(base, unique)
        return None
    if t in ("int", "long"):
        return _long
    if t == "string":
        return _unique_string if unique else _string_encoder()
    if t == "boolean":
        return _boolean
    if t == "double":
        return _DOUBLE.pack
    if t == "float":
        return _FLOAT.pack
    if t == "bytes":
        return _bytes
    if t == "null":
        return lambda _v: b""
    return None


def _field_encoder(t: Any, unique: bool) -> FieldEncoder | None:
    if isinstance(t, list):
        if len(t) == 2 and t[0] == "null":
            inner = _primitive(t[1], unique)
            if inner is None:
                return None

            def nullable(v: Any, inner: FieldEncoder = inner) -> bytes:
                return b"\x00" if v is None else b"\x02" + inner(v)

            return nullable
        return None
    return _primitive(t, unique)


def compile_encoder(
    schema: dict[str, Any], unique_fields: frozenset[str] = frozenset()
) -> Callable[[dict[str, Any]], bytes]:
    """An encoder of records of ``schema`` to Avro binary (no framing).

    ``unique_fields`` names string fields whose values rarely repeat (ids), which
    are not memoised.
    """
    fields = schema.get("fields") if schema.get("type") == "record" else None
    plan: list[tuple[str, FieldEncoder]] = []
    for f in fields or []:
        enc = _field_encoder(f["type"], f["name"] in unique_fields)
        if enc is None:
            plan = []
            break
        plan.append((f["name"], enc))
    if not plan:
        parsed = parse_schema(schema)
        buf = io.BytesIO()

        def slow(record: dict[str, Any]) -> bytes:
            buf.seek(0)
            buf.truncate()
            schemaless_writer(buf, parsed, record)
            return buf.getvalue()

        return slow

    defaults = {f["name"]: f.get("default") for f in fields or []}

    def encode(record: dict[str, Any]) -> bytes:
        get = record.get
        return b"".join([enc(get(name, defaults[name])) for name, enc in plan])

    return encode


# -- the reader ---------------------------------------------------------------------------


class NotCompiled(ValueError):  # noqa: N818 - a signal, not a failure
    """The compiled reader met bytes it does not vouch for: ask fastavro."""


_MS_MIN = -62_135_596_800_000  # 0001-01-01T00:00:00Z, datetime's first millisecond
_MS_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, its last


def _read_varint(target: str, indent: str) -> list[str]:
    """Source lines reading a zig-zag varint into ``target``, inline. At most 10 bytes
    and 64 bits, as fastavro's C reader holds them, and in its shortest form (what
    every Avro writer writes), so that the bytes of a value read are the bytes an
    encoder writes for it."""
    i = indent
    return [
        f"{i}b = buf[p]",
        f"{i}p += 1",
        f"{i}if b < 0x80:",
        f"{i}    {target} = (b >> 1) ^ -(b & 1)",
        f"{i}else:",
        f"{i}    z = b & 0x7F",
        f"{i}    shift = 7",
        f"{i}    while True:",
        f"{i}        b = buf[p]",
        f"{i}        p += 1",
        f"{i}        z |= (b & 0x7F) << shift",
        f"{i}        if b < 0x80:",
        f"{i}            break",
        f"{i}        shift += 7",
        f"{i}        if shift > 63:",
        f"{i}            raise NotCompiled",
        f"{i}    if b == 0 or z >> 64:",
        f"{i}        raise NotCompiled",
        f"{i}    {target} = (z >> 1) ^ -(z & 1)",
    ]


def _read_value(t: Any, target: str, indent: str, logical: bool) -> list[str] | None:
    """Source lines reading one non-union value of type ``t`` into ``target``."""
    if isinstance(t, dict):
        base, kind = t.get("type"), t.get("logicalType")
        if base == "long" and kind == "timestamp-millis":
            lines = _read_varint(target, indent)
            lines += [
                f"{indent}if not {_MS_MIN} <= {target} <= {_MS_MAX}:",
                f"{indent}    raise NotCompiled",
            ]
            if logical:
                lines.append(f"{indent}{target} = EPOCH + timedelta(microseconds={target} * 1000)")
            return lines
        if base == "enum":
            symbols = tuple(t["symbols"])
            lines = _read_varint("i", indent)
            return [
                *lines,
                f"{indent}if not 0 <= i < {len(symbols)}:",
                f"{indent}    raise NotCompiled",
                f"{indent}{target} = {symbols!r}[i]",
            ]
        if kind is None and isinstance(base, str):
            return _read_value(base, target, indent, logical)
        return None
    if t in ("int", "long"):
        return _read_varint(target, indent)
    if t in ("string", "bytes"):
        lines = _read_varint("n", indent)
        lines += [
            f"{indent}q = p + n",
            f"{indent}if n < 0 or q > size:",
            f"{indent}    raise NotCompiled",
        ]
        if t == "string":
            lines.append(f"{indent}{target} = buf[p:q].decode()")
        else:
            lines.append(f"{indent}{target} = buf[p:q]")
        return [*lines, f"{indent}p = q"]
    if t == "boolean":
        return [
            f"{indent}b = buf[p]",
            f"{indent}if b > 1:",
            f"{indent}    raise NotCompiled",
            f"{indent}{target} = b == 1",
            f"{indent}p += 1",
        ]
    if t == "null":
        return [f"{indent}{target} = None"]
    return None  # float and double: rare in flat records here; fastavro reads them


def compile_reader(
    schema: dict[str, Any], *, offset: int = 0, logical: bool = True, spans: bool = False
) -> Callable[[bytes], Any] | None:
    """A reader of one record of a flat ``schema`` from ``buf[offset:]`` (the whole rest
    of ``buf``), or None if the schema holds a type it does not compile.

    ``logical=False`` leaves timestamp-millis values as epoch milliseconds (checked to be
    within datetime's range, so that fastavro could read them too). The reader raises
    ``NotCompiled`` (or IndexError, UnicodeDecodeError: catch ValueError and IndexError)
    on any bytes it does not vouch for.

    ``spans=True``: the reader returns ``(record, spans)``, where ``spans`` holds, per
    field, where its value's bytes start and end in ``buf`` (after a union's index;
    start == end for null). Those bytes are what an encoder writes for the value, so a
    record can be re-framed under another schema by copying them.
    """
    fields = schema.get("fields") if schema.get("type") == "record" else None
    if not fields:
        return None
    body: list[str] = []
    names: list[str] = []
    for i, f in enumerate(fields):
        names.append(f["name"])
        lines = _read_field(i, f["type"], logical, spans)
        if lines is None:
            return None
        body += lines
    source = _reader_source(body, offset, _record_expression(names, spans))
    return _exec_reader(source, schema.get("name", "?"))


def _read_field(i: int, t: Any, logical: bool, spans: bool) -> list[str] | None:
    """Source lines reading field ``i`` (of type ``t``) into ``v{i}``, and with ``spans``
    its value's bounds into ``s{i}`` and ``e{i}``; None if ``t`` does not compile. A
    union is its own case because its bounds exclude the branch index."""
    if isinstance(t, list):
        return _read_nullable(i, t, logical, spans)
    lines = _read_value(t, f"v{i}", "    ", logical)
    if lines is None:
        return None
    return [f"    s{i} = p", *lines, f"    e{i} = p"] if spans else lines


def _read_nullable(i: int, t: list[Any], logical: bool, spans: bool) -> list[str] | None:
    """Source lines reading a ``["null", T]`` (or ``[T, "null"]``) union of field ``i``:
    its branch index, then None or the inner value. Any other union does not compile."""
    if len(t) != 2 or "null" not in t:
        return None
    target = f"v{i}"
    other = t[1] if t[0] == "null" else t[0]
    inner = _read_value(other, target, "        ", logical)
    if inner is None:
        return None
    value_index = 1 if t[0] == "null" else 0
    return [
        "    b = buf[p]",
        "    p += 1",
        *([f"    s{i} = p"] if spans else []),
        f"    if b == {2 * (1 - value_index)}:",
        f"        {target} = None",
        f"    elif b == {2 * value_index}:",
        *inner,
        "    else:",
        "        raise NotCompiled",
        *([f"    e{i} = p"] if spans else []),
    ]


def _record_expression(names: list[str], spans: bool) -> str:
    """The reader's return expression: the record dict of ``v0..vn``, and with ``spans``
    the flat tuple of every field's ``(start, end)``."""
    record = "{" + ", ".join(f"{n!r}: v{i}" for i, n in enumerate(names)) + "}"
    if spans:
        bounds = ", ".join(f"s{i}, e{i}" for i in range(len(names)))
        record = f"{record}, ({bounds},)"
    return record


def _reader_source(body: list[str], offset: int, record: str) -> str:
    """The reader function's source around the fields' lines: it starts at ``offset``
    and refuses trailing bytes, so a reader vouches for the whole of ``buf``."""
    return "\n".join(
        [
            "def read(buf):",
            "    size = len(buf)",
            f"    p = {offset}",
            *body,
            "    if p != size:",
            "        raise NotCompiled",
            f"    return {record}",
        ]
    )


def _exec_reader(source: str, name: str) -> Callable[[bytes], Any]:
    """Compile the reader's ``source`` with only the names it refers to in scope; the
    file name names the schema in tracebacks."""
    namespace: dict[str, Any] = {
        "NotCompiled": NotCompiled,
        "EPOCH": _EPOCH,
        "timedelta": timedelta,
    }
    exec(compile(source, f"<avro reader {name}>", "exec"), namespace)  # noqa: S102
    reader: Callable[[bytes], Any] = namespace["read"]
    return reader
