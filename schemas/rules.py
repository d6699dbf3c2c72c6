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
PHONE_PATTERN = r"^\+947\d{8}$"
DURATION_MAX_SEC = 7200
SIGNAL_MIN, SIGNAL_MAX = 1, 5

UNDECODABLE = Rule("undecodable", None, "value is not Confluent-framed Avro of a registered schema")
SCHEMA = Rule("schema", None, "the writer schema lacks a required column")
NOT_NULL = Rule("not_null", None, "a required column is null")
DUPLICATE_CALL_ID = Rule(
    "duplicate_call_id", "call_id", "call_id already seen within the dedup horizon"
)
PHONE_FORMAT = Rule("phone_format", None, r"caller_num and callee_num match ^\+947\d{8}$")
CALL_TYPE_DOMAIN = Rule("call_type_domain", "call_type", "call_type is VOICE, SMS or DATA")
DURATION_RANGE = Rule("duration_range", "duration_sec", "duration_sec is within 0..7200")
SIGNAL_RANGE = Rule("signal_range", "signal_strength", "signal_strength is within 1..5")
EVENT_TIME_FUTURE = Rule(
    "event_time_future",
    "event_time",
    "event_time is not further ahead of the judging time than allowed",
)
SMS_DURATION = Rule("sms_duration", "duration_sec", "an SMS has duration_sec 0")
SELF_CALL = Rule("self_call", "callee_num", "caller_num differs from callee_num")
DATA_VOLUME = Rule(
    "data_volume", "data_volume_kb", "DATA has a non-negative volume; VOICE and SMS have none"
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
)
RULE_NAMES: tuple[str, ...] = tuple(r.name for r in ALL_RULES)
