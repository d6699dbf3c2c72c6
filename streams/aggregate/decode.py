"""Decoding Confluent-framed Avro in Spark, with every writer schema of the subject.

A ``cdr.valid`` value is ``0x00``, a 4-byte big-endian schema id, then Avro binary
written with that id's schema. At start the job fetches **every version** of the
topic's subject from the registry (``Decoders.fetch``) and builds one
``from_avro(payload, writer_schema, {"avroSchema": reader})`` per id, chosen
per row by a ``CASE`` on the id. The reader schema is the contract's ``Cdr``, so
each branch yields the same struct and records of all compatible versions are
aggregated together (Avro schema resolution: a field the reader lacks is
skipped, one the writer lacks takes its default).

An id that is not among them (a version registered after the job started)
fails the micro-batch with ``raise_error`` **before** it is committed; ``job.run``
then fetches the versions again and restarts from the checkpoint, so the batch
is redone with the new schema: nothing skipped, nothing doubled. An id the
registry does not know at all stops the job with ``UnknownSchemaIdError``.

Bytes that are not a record (wrong magic byte, Avro that does not parse with its
writer schema: spark-avro's PERMISSIVE mode yields a struct of nulls, turned into
a null here) are not dropped: ``decoded`` is null and the job writes them to
``undecodable/`` with their coordinates.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as sf
from pyspark.sql.avro.functions import from_avro

from kappa.clients import registry_address, registry_unreachable
from schemas.contract import SchemaName, schema_text, subject
from streams.aggregate.exceptions import SourceUnavailableError, UnknownSchemaIdError

log = logging.getLogger(__name__)

MAGIC = b"\x00"
UNKNOWN_ID_MARKER = "KAPPA_UNKNOWN_SCHEMA_ID"
_UNKNOWN_ID_RE = re.compile(UNKNOWN_ID_MARKER + r" (\d+)")


@dataclass(frozen=True)
class Decoders:
    """Writer schemas by id for one subject, plus the reader schema they resolve to."""

    subject: str
    writers: dict[int, str]
    reader: str

    @classmethod
    def fetch(
        cls, registry: SchemaRegistryClient, topic: str, reader: SchemaName = SchemaName.CDR
    ) -> Decoders:
        """Every version registered under ``<topic>-value``."""
        name = subject(topic)
        try:
            versions = registry.get_versions(name)
            writers: dict[int, str] = {}
            for version in versions:
                registered = registry.get_version(name, version)
                writers[int(registered.schema_id)] = str(registered.schema.schema_str)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                # Nothing was written yet (the validator registers the schema on start);
                # the first record's id will be fetched when it arrives.
                log.warning("subject %s has no schema yet; starting without decoders", name)
                return cls(subject=name, writers={}, reader=schema_text(reader))
            msg = f"registry error for {name}: {exc.error_message} (HTTP {exc.http_status_code})"
            raise SourceUnavailableError(msg) from exc
        except Exception as exc:
            raise registry_unreachable(registry_address(registry), exc) from exc
        log.info("decoders subject=%s ids=%s", name, sorted(writers))
        return cls(subject=name, writers=writers, reader=schema_text(reader))

    def with_id(self, registry: SchemaRegistryClient, schema_id: int) -> Decoders:
        """These decoders plus the schema registered under ``schema_id``, if any."""
        try:
            text = registry.get_schema(schema_id).schema_str
        except SchemaRegistryError as exc:
            msg = (
                f"schema id {schema_id} found in {self.subject.removesuffix('-value')} "
                "is not in the registry; the topic holds records no one can decode"
            )
            raise UnknownSchemaIdError(msg) from exc
        return Decoders(self.subject, {**self.writers, schema_id: str(text)}, self.reader)


def unknown_id_in(error_text: str) -> int | None:
    """The schema id named by a batch that failed on an unknown id, if that is why it failed."""
    match = _UNKNOWN_ID_RE.search(error_text)
    return int(match.group(1)) if match else None


def schema_id_col(value: Column, known: Iterable[int] = ()) -> Column:
    """The 4-byte big-endian id after the magic byte (null if the value is too short).

    Ids in ``known`` are recognised by comparing the 5-byte prefix; only other
    values pay for parsing the id out of its hex text.
    """
    parsed = sf.when(
        sf.length(value) >= 5,
        sf.conv(sf.hex(sf.substring(value, 2, 4)), 16, 10).cast("long"),
    )
    prefix = sf.substring(value, 1, 5)
    chosen: Column | None = None
    for schema_id in sorted(known):
        hit = prefix == sf.lit(MAGIC + schema_id.to_bytes(4, "big"))
        value_id = sf.lit(schema_id).cast("long")
        chosen = sf.when(hit, value_id) if chosen is None else chosen.when(hit, value_id)
    return parsed if chosen is None else chosen.otherwise(parsed)


def decode(source: DataFrame, decoders: Decoders) -> DataFrame:
    """Kafka rows (``value``, ``partition``, ``offset``, ...) -> ``schema_id``, ``decoded``.

    ``decoded`` is a struct with the reader schema's fields, null for bytes that
    are not a record; all source columns are kept.
    """
    value = sf.col("value")
    framed = source.withColumn("schema_id", schema_id_col(value, decoders.writers)).withColumn(
        "magic_ok", (sf.length(value) >= 5) & (sf.substring(value, 1, 1) == sf.lit(MAGIC))
    )
    payload = sf.expr("substring(value, 6)")
    options = {"mode": "PERMISSIVE", "avroSchema": decoders.reader}
    branches: Column | None = None
    for schema_id, writer in sorted(decoders.writers.items()):
        # Normalize the writer text: from_avro parses it with Avro's Java parser.
        text = json.dumps(json.loads(writer), separators=(",", ":"))
        branch = from_avro(payload, text, options)
        cond = sf.col("schema_id") == sf.lit(schema_id)
        branches = sf.when(cond, branch) if branches is None else branches.when(cond, branch)
    unknown = sf.raise_error(
        sf.concat(sf.lit(UNKNOWN_ID_MARKER + " "), sf.col("schema_id").cast("string"))
    )
    if branches is None:
        # No version registered yet: the reader's branch, never taken, gives
        # ``decoded`` its struct type; the first framed value fails the batch with its id.
        branches = sf.when(sf.lit(False), from_avro(payload, decoders.reader, options))
    decoded = branches.otherwise(unknown)
    # PERMISSIVE turns bytes that do not parse into a struct of nulls, not a null:
    # the reader's first field is required, so a null there marks such a row.
    first = json.loads(decoders.reader)["fields"][0]["name"]
    return (
        framed.withColumn("decoded", sf.when(sf.col("magic_ok"), decoded))
        .withColumn(
            "decoded", sf.when(sf.col("decoded").getField(first).isNotNull(), sf.col("decoded"))
        )
        .drop("magic_ok")
    )
