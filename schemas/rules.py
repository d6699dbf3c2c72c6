"""The named rules a raw CDR is judged by.

A rule's name is part of the contract: the dead-letter record, the metrics, the
reports and the producer's fault injection all carry it, so it never changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    column: str | None
    description: str


REQUIRED_COLUMNS: tuple[str, ...] = (
    "call_id",
    "caller_num",
    "callee_num",
    "call_type",
    "duration_sec",
    "event_time",
    "tower_id",
    "signal_strength",
)
CALL_TYPES: tuple[str, ...] = ("VOICE", "SMS", "DATA")
# ASCII digits only: Python's \d also matches other scripts' digits.
PHONE_PATTERN = r"^\+947[0-9]{8}$"
# An identifier: 1 to 64 (call) or 32 (tower) ASCII letters, digits, '.', '_', ':' or
# '-', starting with a letter or digit (a UUID, TOWER_001). No blanks, no control
# characters, nothing outside ASCII.
CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
TOWER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}$"
DURATION_MAX_SEC = 7200
SIGNAL_MIN, SIGNAL_MAX = 1, 5
# 2000-01-01T00:00:00Z in epoch ms: no CDR of this pipeline is older, and a Kafka
# message timestamp (cdr.valid's is the event time) cannot be negative.
EVENT_TIME_MIN_MS = 946_684_800_000
# More than a two-hour session moves at 1 Gbit/s (~900 GB).
DATA_VOLUME_MAX_KB = 1_000_000_000

UNDECODABLE = Rule("undecodable", None, "value is not Confluent-framed Avro of a registered schema")
SCHEMA = Rule("schema", None, "the writer schema lacks a required column")
NOT_NULL = Rule("not_null", None, "a required column is null")
DUPLICATE_CALL_ID = Rule(
    "duplicate_call_id", "call_id", "call_id already seen within the dedup horizon"
)
PHONE_FORMAT = Rule("phone_format", None, r"caller_num and callee_num match ^\+947[0-9]{8}$")
CALL_ID_FORMAT = Rule(
    "call_id_format", "call_id", "call_id is 1-64 ASCII letters, digits, '.', '_', ':' or '-'"
)
TOWER_ID_FORMAT = Rule(
    "tower_id_format", "tower_id", "tower_id is 1-32 ASCII letters, digits, '.', '_', ':' or '-'"
)
CALL_TYPE_DOMAIN = Rule("call_type_domain", "call_type", "call_type is VOICE, SMS or DATA")
DURATION_RANGE = Rule("duration_range", "duration_sec", "duration_sec is within 0..7200")
SIGNAL_RANGE = Rule("signal_range", "signal_strength", "signal_strength is within 1..5")
EVENT_TIME_FUTURE = Rule(
    "event_time_future",
    "event_time",
    "event_time is not further ahead of the judging time than allowed",
)
EVENT_TIME_PAST = Rule(
    "event_time_past", "event_time", "event_time is not before 2000-01-01T00:00:00Z"
)
SMS_DURATION = Rule("sms_duration", "duration_sec", "an SMS has duration_sec 0")
SELF_CALL = Rule("self_call", "callee_num", "caller_num differs from callee_num")
DATA_VOLUME = Rule(
    "data_volume",
    "data_volume_kb",
    "DATA has a volume within 0..1e9 KB; VOICE and SMS have none (0 or null)",
)

ALL_RULES: tuple[Rule, ...] = (
    UNDECODABLE,
    SCHEMA,
    NOT_NULL,
    DUPLICATE_CALL_ID,
    PHONE_FORMAT,
    CALL_TYPE_DOMAIN,
    DURATION_RANGE,
    SIGNAL_RANGE,
    EVENT_TIME_FUTURE,
    SMS_DURATION,
    SELF_CALL,
    DATA_VOLUME,
    CALL_ID_FORMAT,
    TOWER_ID_FORMAT,
    EVENT_TIME_PAST,
)
RULE_NAMES: tuple[str, ...] = tuple(r.name for r in ALL_RULES)
