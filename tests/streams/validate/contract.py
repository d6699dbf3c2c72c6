"""The written contract of a cdr.valid record, in plain Python (no GX, no pandas, no
regexes shared with the validator): what the schemas' ``doc`` fields and the README
say a valid value is. The property and fuzz tests judge the validator's output by it.
"""

from __future__ import annotations

from typing import Any

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_DIGITS = frozenset("0123456789")
YEAR_2000_MS = 946_684_800_000
DURATION_MAX = 7200
DATA_VOLUME_MAX = 1_000_000_000
INT32 = range(-(2**31), 2**31)


def _identifier(value: Any, longest: int) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= longest
        and value[0] in _ALNUM
        and all(c in _ID_CHARS for c in value)
    )


def _phone(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 12
        and value.startswith("+947")
        and all(c in _DIGITS for c in value[4:])
    )


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def violations(rec: dict[str, Any], *, judged_at_ms: int, tolerance_ms: int) -> list[str]:
    """Every clause of the contract ``rec`` (a CdrRaw or Cdr as a dict, event_time in
    epoch ms, data_volume_kb None meaning 0) breaks; empty: it may reach cdr.valid."""
    out = []
    if not _identifier(rec.get("call_id"), 64):
        out.append("call_id")
    if not _phone(rec.get("caller_num")):
        out.append("caller_num")
    if not _phone(rec.get("callee_num")):
        out.append("callee_num")
    elif rec.get("callee_num") == rec.get("caller_num"):
        out.append("caller_num == callee_num")
    kind = rec.get("call_type")
    if kind not in ("VOICE", "SMS", "DATA"):
        out.append("call_type")
    duration = rec.get("duration_sec")
    if not (_int(duration) and 0 <= duration <= DURATION_MAX):
        out.append("duration_sec")
    elif kind == "SMS" and duration != 0:
        out.append("SMS duration_sec")
    when = rec.get("event_time")
    if not (_int(when) and YEAR_2000_MS <= when <= judged_at_ms + tolerance_ms):
        out.append("event_time")
    if not _identifier(rec.get("tower_id"), 32):
        out.append("tower_id")
    signal = rec.get("signal_strength")
    if not (_int(signal) and 1 <= signal <= 5):
        out.append("signal_strength")
    volume = 0 if rec.get("data_volume_kb") is None else rec.get("data_volume_kb")
    if not _int(volume):
        out.append("data_volume_kb")
    elif kind == "DATA" and not 0 <= volume <= DATA_VOLUME_MAX:
        out.append("DATA data_volume_kb")
    elif kind in ("VOICE", "SMS") and volume != 0:
        out.append("VOICE/SMS data_volume_kb")
    return out


def message_violations(key: bytes | None, timestamp_ms: int, rec: dict[str, Any]) -> list[str]:
    """What a cdr.valid message breaks of its framing contract: key = call_id (UTF-8),
    message timestamp = event time."""
    out = []
    if key != str(rec.get("call_id")).encode():
        out.append("key")
    if timestamp_ms != rec.get("event_time"):
        out.append("timestamp")
    return out
