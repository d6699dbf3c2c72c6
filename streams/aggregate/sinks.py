"""Where each micro-batch's output goes: Parquet tables and Avro Kafka topics.

**Parquet** (``billing_realtime/``, ``network_realtime/``, ``late/``, ``undecodable/``
under a local path or an ``hdfs://`` URL): a batch is written to
``<root>/_staging/<table>/batch=<id>/`` (a file per task, no funnel through one),
then each file is renamed into the table as ``batch-<id>-<part>.parquet`` after
removing any file of that batch id left by an earlier attempt. A batch that Spark
replays after a crash therefore replaces its own files instead of adding copies:
the tables hold each window row once.
Readers (Spark, pandas, pyarrow) skip ``_staging`` (leading underscore).

**Kafka** (``cdr.billing.5m``, ``cdr.network.5m``, ``cdr.late``): Confluent-framed
Avro (``BillingWindow``, ``TowerWindow``, ``LateCdr``, ids from the registry),
written by the batch with Spark's Kafka sink: **at-least-once**. A replayed batch
sends its rows again, but they are the same rows under the same keys
(``<window_start>|<caller>``, ``<window_start>|<tower>``, the late CDR's
``call_id``): an emitted window is final in append mode, and ``captured_at`` comes
from the offset log. The topics are compacted (``kappa stack up`` and compose create
them so): a consumer that keeps the latest value per key (a table, Kafka UI) sees
every row exactly once; one reading from the start may meet a row twice, with the
same value, until compaction has run.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.avro.functions import to_avro

log = logging.getLogger(__name__)


def confluent_header(schema_id: int) -> bytes:
    return b"\x00" + int(schema_id).to_bytes(4, "big")


class ParquetTables:
    """Idempotent per-batch appends into Parquet tables under ``root``."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        self._spark = spark
        self.root = root.rstrip("/")
        jvm: Any = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._path(self.root).getFileSystem(
            spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
        )
        self._fs.mkdirs(self._path(self.root))

    def table_path(self, table: str) -> str:
        return f"{self.root}/{table}"

    def write(self, df: DataFrame, table: str, batch_id: int) -> None:
        """Write ``df`` as batch ``batch_id`` of ``table``, replacing an earlier attempt."""
        path = self._path
        staging = f"{self.root}/_staging/{table}/batch={batch_id}"
        df.write.mode("overwrite").parquet(staging)
        target = path(self.table_path(table))
        self._fs.mkdirs(target)
        prefix = f"batch-{batch_id}-"
        for status in self._fs.listStatus(target):
            if status.getPath().getName().startswith(prefix):
                self._fs.delete(status.getPath(), False)
        for status in self._fs.listStatus(path(staging)):
            name = status.getPath().getName()
            if name.endswith(".parquet"):
                self._fs.rename(status.getPath(), path(target, prefix + name))
        self._fs.delete(path(staging), True)

    def move_aside(self, tables: tuple[str, ...], folder: str) -> list[str]:
        """Rename each existing table to ``<root>/<folder>/<table>``; the new paths."""
        moved: list[str] = []
        for table in tables:
            if not self.exists(table):
                continue
            target = f"{self.root}/{folder}/{table}"
            self._fs.mkdirs(self._path(f"{self.root}/{folder}"))
            if not self._fs.rename(self._path(self.table_path(table)), self._path(target)):
                msg = f"could not move {self.table_path(table)} to {target}"
                raise OSError(msg)
            log.warning("table %s moved to %s", self.table_path(table), target)
            moved.append(target)
        return moved

    def exists(self, table: str) -> bool:
        return bool(self._fs.exists(self._path(self.table_path(table))))


def avro_value(
    df: DataFrame, columns: tuple[str, ...] | list[str], schema_json: str, schema_id: int
) -> Column:
    """``0x00 | id | Avro`` of ``columns`` as one binary column."""
    record = sf.struct(*[sf.col(c) for c in columns])
    return sf.concat(sf.lit(confluent_header(schema_id)), to_avro(record, schema_json))


def kafka_rows(df: DataFrame, topic: str, key: Column, value: Column) -> DataFrame:
    """``df`` as rows of Spark's Kafka sink: ``topic``, ``key`` (string), ``value``."""
    return df.select(
        sf.lit(topic).alias("topic"), key.cast("string").alias("key"), value.alias("value")
    )


def write_kafka_rows(rows: DataFrame, options: dict[str, str]) -> None:
    """Write ``kafka_rows`` (of one topic or several) in one Spark job (at-least-once)."""
    rows.write.format("kafka").options(**options).save()


def window_key(*parts: str) -> Column:
    """``2026-01-01T10:00:00Z|<part>``: the window start in UTC ISO-8601, then the parts."""
    start = sf.date_format(sf.col("window_start"), "yyyy-MM-dd'T'HH:mm:ss'Z'")
    return sf.concat_ws("|", start, *[sf.col(p) for p in parts])
