"""Confluent-framed Avro ``Cdr`` values → the ``Cdr`` columns, with spark-avro.

Every writer schema registered under the topic's subject is decoded with
itself (``from_avro`` with the writer schema of the record's id), then projected
onto the columns of ``streams.aggregate.transforms.CDR_SCHEMA``; a field an
older writer lacked takes its Avro default. A record whose schema id is not
registered under the subject fails the replay with a clear message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # noqa: N812
from pyspark.sql.avro.functions import from_avro

from kappa import clients
from kappa.settings import RegistrySettings
from replay.exceptions import ReplayError
from schemas import SchemaName, load_schema
from schemas.contract import subject
from streams.aggregate import transforms

log = logging.getLogger(__name__)


class UnknownSchemaIdError(ReplayError):
    """A record's schema id is not registered under the topic's subject."""


def writer_schemas(registry: RegistrySettings, topic: str) -> dict[int, str]:
    """Schema id → schema text of every version under ``<topic>-value``."""
    client = clients.registry(registry)
    name = subject(topic)
    out: dict[int, str] = {}
    for version in client.get_versions(name):
        registered = client.get_version(name, version)
        out[int(registered.schema_id)] = str(registered.schema.schema_str)
    return out


def _defaults() -> dict[str, Any]:
    return {f["name"]: f["default"] for f in load_schema(SchemaName.CDR)["fields"]
            if "default" in f}


def _project(struct: Column, writer: dict[str, Any]) -> Column:
    """The ``Cdr`` columns out of one writer's decoded struct."""
    present = {f["name"] for f in writer.get("fields", [])}
    defaults = _defaults()
    cols = []
    for f in transforms.CDR_SCHEMA.fields:
        col = struct.getField(f.name) if f.name in present else F.lit(defaults.get(f.name))
        cols.append(col.cast(f.dataType).alias(f.name))
    return F.struct(*cols)


def decode_cdrs(raw: DataFrame, registry: RegistrySettings, topic: str,
                schema_ids: list[int] | None = None) -> DataFrame:
    """``raw`` (Kafka rows with a ``schema_id`` column) → its columns plus the ``Cdr`` ones."""
    writers = writer_schemas(registry, topic)
    if schema_ids is not None:
        unknown = sorted(set(schema_ids) - set(writers))
        if unknown:
            msg = (f"records of {topic} carry schema ids {unknown} not registered under "
                   f"{subject(topic)} (registered: {sorted(writers)})")
            raise UnknownSchemaIdError(msg)
    body = F.expr("substring(value, 6, length(value) - 5)")
    decoded: Column = F.lit(None)
    for sid, text in sorted(writers.items()):
        writer = json.loads(text)
        if writer.get("name") != "Cdr" and not str(writer.get("name", "")).endswith(".Cdr"):
            continue
        struct = from_avro(body, text, {"mode": "FAILFAST"})
        decoded = F.when(F.col("schema_id") == F.lit(sid), _project(struct, writer)).otherwise(
            decoded)
    out = raw.withColumn("_cdr", decoded)
    return out.select(*raw.columns, *[F.col(f"_cdr.{f.name}").alias(f.name)
                                      for f in transforms.CDR_SCHEMA.fields])
