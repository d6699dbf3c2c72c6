"""Loading the ``.avsc`` files and registering them under their topics' subjects.

Subjects follow Confluent's TopicNameStrategy (``<topic>-value``); message keys
are plain UTF-8 strings (the ``call_id``, or the aggregate's natural key) and
have no schema. Every subject is set to BACKWARD compatibility before its first
registration, so a consumer on a new schema can always read older records.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema

from kappa.settings import TopicSettings
from schemas.exceptions import IncompatibleSchemaError, SchemaError

log = logging.getLogger(__name__)

COMPATIBILITY = "BACKWARD"


class SchemaName(StrEnum):
    CDR_RAW = "cdr_raw"
    CDR = "cdr"
    DEAD_LETTER = "dead_letter"
    BILLING_WINDOW = "billing_window"
    TOWER_WINDOW = "tower_window"
    LATE_CDR = "late_cdr"
    LEGACY_CDR_EVENT = "legacy_cdr_event"


@cache
def schema_text(name: SchemaName) -> str:
    """The schema as canonical-ish JSON text (what the registry stores)."""
    try:
        raw = resources.files("schemas").joinpath(f"avro/{name.value}.avsc").read_text("utf-8")
    except FileNotFoundError as exc:
        msg = f"schema file avro/{name.value}.avsc is missing"
        raise SchemaError(msg) from exc
    return json.dumps(json.loads(raw), separators=(",", ":"))


def load_schema(name: SchemaName) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text(name))
    return loaded


@cache
def parsed_schema(name: SchemaName) -> Any:
    """fastavro's parsed form, cached."""
    return parse_schema(load_schema(name))


def subject(topic: str) -> str:
    return f"{topic}-value"


def topic_schemas(topics: TopicSettings) -> dict[str, SchemaName]:
    """Which schema each topic carries."""
    return {
        topics.raw: SchemaName.CDR_RAW,
        topics.valid: SchemaName.CDR,
        topics.dlq: SchemaName.DEAD_LETTER,
        topics.billing: SchemaName.BILLING_WINDOW,
        topics.network: SchemaName.TOWER_WINDOW,
        topics.late: SchemaName.LATE_CDR,
    }


def register(client: SchemaRegistryClient, subject_name: str, text: str) -> int:
    """Register ``text`` under ``subject_name`` with BACKWARD compatibility; return its id.

    Registering a schema already present returns the existing id. Several
    processes may register the same subject at once (a producer and a validator
    starting together): whichever sets the compatibility first wins, the others
    find it set.
    """
    _ensure_compatibility(client, subject_name)
    try:
        return int(client.register_schema(subject_name, Schema(text, "AVRO")))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            msg = f"registry refused an incompatible schema for {subject_name}: {exc.error_message}"
            raise IncompatibleSchemaError(msg) from exc
        msg = (
            f"registry error for {subject_name}: {exc.error_message} (HTTP {exc.http_status_code})"
        )
        raise SchemaError(msg) from exc


def _ensure_compatibility(client: SchemaRegistryClient, subject_name: str) -> None:
    for _ in range(3):
        try:
            if client.get_compatibility(subject_name) == COMPATIBILITY:
                return
        except SchemaRegistryError:
            pass  # no subject-level setting yet
        try:
            client.set_compatibility(subject_name=subject_name, level=COMPATIBILITY)
            return
        except SchemaRegistryError as exc:
            if exc.http_status_code != 409:  # 409: another process set it meanwhile
                msg = (
                    f"registry error setting {COMPATIBILITY} on {subject_name}: "
                    f"{exc.error_message} (HTTP {exc.http_status_code})"
                )
                raise SchemaError(msg) from exc
    msg = f"could not set {COMPATIBILITY} compatibility on {subject_name}"
    raise SchemaError(msg)


def register_topic_schemas(client: SchemaRegistryClient, topics: TopicSettings) -> dict[str, int]:
    """Register each topic's schema; returns topic -> schema id."""
    ids = {}
    for topic, name in topic_schemas(topics).items():
        ids[topic] = register(client, subject(topic), schema_text(name))
        log.info("schema registered topic=%s schema=%s id=%s", topic, name.value, ids[topic])
    return ids


def register_legacy(client: SchemaRegistryClient, topics: TopicSettings) -> int:
    """The predecessor's JSON event shape, registered apart so that a legacy producer's
    records reach ``cdr.raw`` decodable but missing columns (the ``schema`` rule)."""
    return register(client, f"{topics.raw}.legacy-value", schema_text(SchemaName.LEGACY_CDR_EVENT))
