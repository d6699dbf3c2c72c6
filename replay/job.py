"""The replay job: planned offsets of ``cdr.valid`` → Parquet, through the aggregation's transforms.

Output of a range, at ``<root>/<range id>/``::

    cdr/               the records of [from, to), partitioned by event_date / event_hour
    billing_report/    streams.aggregate.tables.BILLING over them (the stream's own function)
    network_health/    streams.aggregate.tables.NETWORK over them
    undecodable/       only if some bytes were not a record: those rows, as read
    manifest.json      range, per-partition offsets read, counts, schema ids, run id, summary
    _SUCCESS           written last

The topic is read and decoded once: every record read is written to
``_sorted/`` in the staging folder, partitioned by where it stands against the
range (in, before, after, undecodable) and by event date and hour; ``where=in``
becomes ``cdr/`` by a rename, and the counts and both aggregations read the
columnar Parquet rather than the topic again.

Everything is written into a hidden staging folder next to the target and
swapped in by renames (``fs.HadoopFs.publish``): a rerun replaces the output
of the range, a failed run leaves the previous output as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from kappa import clients
from kappa.settings import AggregateSettings, KafkaSettings, RegistrySettings
from replay.exceptions import ReplayFailedError
from replay.fs import STAGING_PREFIX, HadoopFs, join, normalize
from replay.plan import ReplayPlan, iso, to_ms
from replay.progress import Progress
from streams.aggregate import decode as agg_decode
from streams.aggregate import tables, transforms
from streams.aggregate.decode import Decoders, unknown_id_in
from streams.spark import run_concurrently

log = logging.getLogger(__name__)

CDR_DIR = "cdr"
BILLING_DIR, NETWORK_DIR = tables.BILLING.replay_folder, tables.NETWORK.replay_folder
UNDECODABLE_DIR = "undecodable"
MANIFEST, SUCCESS = "manifest.json", "_SUCCESS"
MANIFEST_VERSION = 1
CDR_COLUMNS = [f.name for f in transforms.CDR_SCHEMA.fields]
SOURCE_COLUMNS = ["kafka_partition", "kafka_offset", "schema_id"]
PARTITION_COLUMNS = ["event_date", "event_hour"]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class ReplayContext:
    """What a replay needs besides its plan: connections and the aggregation's definitions."""

    kafka: KafkaSettings
    registry: RegistrySettings
    aggregate: AggregateSettings
    output_root: str
    progress: bool = True
    records_per_task: int = 250_000


def range_url(root: str, plan: ReplayPlan) -> str:
    return join(normalize(root), plan.range_id)


# -- reading ---------------------------------------------------------------------------------


def read_tasks(plan: ReplayPlan, records_per_task: int) -> int:
    """Read tasks for the plan: at least one per partition, about ``records_per_task`` each.

    A topic of three partitions on two cores would otherwise leave one core idle
    for the last third of the read; Spark splits each partition's span in
    proportion (``minPartitions``).
    """
    return max(len(plan.spans), -(-plan.offsets_to_read // records_per_task))


def read_kafka(
    spark: SparkSession,
    kafka: KafkaSettings,
    assign: str,
    starting: str,
    ending: str,
    *,
    tasks: int | None = None,
) -> DataFrame:
    """Spark's Kafka source rows (batch) of the ``assign``ed partitions between two
    offset specs (JSON, or ``earliest``/``latest``), in ``tasks`` read tasks at least."""
    reader = (
        spark.read.format("kafka")
        .options(**kafka.spark_options())
        .option("assign", assign)
        .option("startingOffsets", starting)
        .option("endingOffsets", ending)
        # cdr.valid is written in transactions: aborted records are not records.
        .option("kafka.isolation.level", "read_committed")
    )
    if tasks is not None:
        reader = reader.option("minPartitions", str(tasks))
    return reader.load()


def read_offsets(
    spark: SparkSession,
    kafka: KafkaSettings,
    plan: ReplayPlan,
    records_per_task: int = 250_000,
) -> DataFrame:
    """The planned offsets of the topic as Spark's Kafka source rows (batch)."""
    return read_kafka(
        spark,
        kafka,
        plan.assign_json(),
        plan.starting_offsets_json(),
        plan.ending_offsets_json(),
        tasks=read_tasks(plan, records_per_task),
    )


RUN_CONF = {
    # Each task writes its rows to the (few) hour folders it meets through
    # concurrent writers, instead of sorting them by hour first.
    "spark.sql.optimizer.plannedWrite.enabled": "false",
    "spark.sql.maxConcurrentOutputFileWriters": "64",
    # Tower health keeps a caller set per (window, tower): hash-based for the few
    # thousand groups of a range, rather than sorting after 128 of them.
    "spark.sql.objectHashAggregate.sortBased.fallbackThreshold": "100000",
}


@contextlib.contextmanager
def run_conf(spark: SparkSession) -> Iterator[None]:
    """``RUN_CONF`` for the duration of a replay; the session's own values afterwards."""
    before = {key: spark.conf.get(key, None) for key in RUN_CONF}
    for key, value in RUN_CONF.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def decoders_for(ctx: ReplayContext, topic: str) -> Decoders:
    """The aggregation's decoders: every writer schema registered under the topic's
    subject, resolved to the contract's ``Cdr``."""
    return Decoders.fetch(clients.registry(ctx.registry), topic)


def decode(raw: DataFrame, decoders: Decoders) -> DataFrame:
    """Kafka rows → the ``Cdr`` columns plus where each came from (partition, offset, schema id).

    Bytes that are not a record keep null ``Cdr`` columns (``where_col`` calls them
    ``undecodable``; the run keeps them whole in ``undecodable/``).
    """
    framed = agg_decode.decode(raw, decoders)
    return framed.select(
        *[F.col(f"decoded.{c}").alias(c) for c in CDR_COLUMNS],
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("schema_id").cast("int").alias("schema_id"),
    )


def undecodable(raw: DataFrame, decoders: Decoders) -> DataFrame:
    """The rows whose bytes are not a record (wrong magic byte, malformed Avro), as they were."""
    return (
        agg_decode.decode(raw, decoders)
        .where(F.col("decoded").isNull())
        .select(
            "key",
            "value",
            "partition",
            "offset",
            "timestamp",
            F.col("schema_id").cast("int").alias("schema_id"),
        )
    )


WHERE = "where"
SORTED_DIR = "_sorted"
"""Staging folder of every record read, partitioned by ``where`` (in, before, after the
range, undecodable), then by event date and hour; ``where=in`` becomes ``cdr/``."""


def where_col(plan: ReplayPlan) -> Column:
    """Where a decoded row stands against the range: ``in``, ``before``, ``after``, or
    ``undecodable`` (bytes that are not a record)."""
    ms = F.unix_millis(F.col("event_time"))
    return (
        F.when(F.col("call_id").isNull(), F.lit("undecodable"))
        .when(ms < F.lit(to_ms(plan.start)), F.lit("before"))
        .when(ms >= F.lit(to_ms(plan.end)), F.lit("after"))
        .otherwise(F.lit("in"))
    )


def in_range(cdrs: DataFrame, plan: ReplayPlan) -> DataFrame:
    """Exactly the records whose event time is in ``[from, to)``."""
    ms = F.unix_millis(F.col("event_time"))
    return cdrs.where((ms >= F.lit(to_ms(plan.start))) & (ms < F.lit(to_ms(plan.end))))


_DAY_US, _HOUR_US = 86_400_000_000, 3_600_000_000


def with_partitions(cdrs: DataFrame) -> DataFrame:
    """``event_date`` (a date: folders ``event_date=2026-01-01``) and ``event_hour``
    (0-23) of each record's UTC event time, by arithmetic on its microseconds
    (``to_date``/``hour`` go through the session's zone rules for every row)."""
    us = F.unix_micros(F.col("event_time"))
    in_day = F.pmod(us, F.lit(_DAY_US))
    days = (us - in_day) / F.lit(_DAY_US)
    return cdrs.withColumn("event_date", F.date_from_unix_date(days.cast("int"))).withColumn(
        "event_hour", (in_day / F.lit(_HOUR_US)).cast("int")
    )


CDR_PARQUET_OPTIONS = {
    # Measured on the 10M bench: Parquet's dictionary pages cost a third of the
    # read-decode-write stage (call ids, offsets and times are unique anyway), and
    # zstd over plain pages is smaller than snappy over dictionaries (137 MB
    # against 205 MB for 10.2M records).
    "parquet.enable.dictionary": "false",
    "compression": "zstd",
}
"""Write options of the records' Parquet (``cdr/`` and the staging it comes from)."""


# -- the job ---------------------------------------------------------------------------------


class Stopwatch:
    """Seconds per named stage of a run, for the manifest (where a replay spends its time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def concurrently(self, stages: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """Run ``stages`` at the same time (each its own Spark job), timing each; wait for
        all of them, then raise the first failure, if any."""
        return run_concurrently(
            {name: partial(self._timed, name, fn) for name, fn in stages.items()}
        )

    def _timed(self, name: str, fn: Callable[[], Any]) -> Any:
        with self(name):
            return fn()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - began, 3)


def run(
    spark: SparkSession, plan: ReplayPlan, ctx: ReplayContext, run_id: str | None = None
) -> dict[str, Any]:
    """Replay ``plan`` into ``<root>/<range id>/``; return the manifest.

    Raises ``ReplayFailedError`` (previous output intact, staging removed) when anything fails.
    """
    run_id = run_id or new_run_id()
    started = time.monotonic()
    # Hours, dates and windows are UTC wall-clock ones, whatever the machine's zone.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    fs = HadoopFs(spark, ctx.output_root)
    fs.mkdirs(fs.root)
    with fs.lock(plan.range_id, run_id):
        fs.recover(plan.range_id)
        staging = join(fs.root, f"{STAGING_PREFIX}{plan.range_id}-{run_id}")
        log.info(
            "replay started run_id=%s from=%s to=%s offsets=%s target=%s",
            run_id,
            iso(plan.start),
            iso(plan.end),
            plan.offsets_to_read,
            join(fs.root, plan.range_id),
        )
        try:
            stage = Stopwatch()
            with Progress(spark, enabled=ctx.progress), run_conf(spark):
                source = read_offsets(spark, ctx.kafka, plan, ctx.records_per_task)
                decoders = decoders_for(ctx, plan.topic)
                decoded = decode(source, decoders)
                # One pass over the topic: every record read lands in the staging folder by
                # where it stands; the in-range part is then cdr/ by a rename, and the
                # counts and aggregates read the (columnar, much smaller) Parquet.
                sorted_url = join(staging, SORTED_DIR)
                with stage("read_decode_write"):
                    (
                        with_partitions(decoded.withColumn(WHERE, where_col(plan)))
                        .write.mode("errorifexists")
                        .options(**CDR_PARQUET_OPTIONS)
                        .partitionBy(WHERE, *PARTITION_COLUMNS)
                        .parquet(sorted_url)
                    )
                # Counting, billing and tower health read the Parquet just written and not
                # each other: run as three concurrent Spark jobs, one's single-task and
                # planning moments are the others' time on the cores.
                in_url = join(sorted_url, f"{WHERE}=in")
                has_rows = fs.exists(in_url)
                rows = spark.read.parquet(in_url) if has_rows else _no_rows(spark, decoded)
                params = tables.Params.from_settings(ctx.aggregate)
                done = stage.concurrently(
                    {
                        "count": lambda: _counts(
                            _read_sorted(spark, fs, sorted_url, decoded), plan
                        ),
                        BILLING_DIR: lambda: _write_table(
                            spark,
                            tables.BILLING.compute(rows, params),
                            join(staging, BILLING_DIR),
                            _billing_totals,
                        ),
                        NETWORK_DIR: lambda: _write_table(
                            spark,
                            tables.NETWORK.compute(rows, params),
                            join(staging, NETWORK_DIR),
                            _network_totals,
                        ),
                    }
                )
                counts = done["count"]
                summary = {
                    "records": counts["totals"]["records"],
                    "callers": done[BILLING_DIR]["callers"],
                    "towers": done[NETWORK_DIR]["towers"],
                    "revenue": done[BILLING_DIR]["revenue"],
                }
                if counts["totals"]["undecodable"]:
                    # Errors are data: kept with their coordinates, counted in the manifest.
                    log.warning(
                        "undecodable records in the replayed offsets count=%s",
                        counts["totals"]["undecodable"],
                    )
                    with stage(UNDECODABLE_DIR):
                        (
                            undecodable(source, decoders)
                            .coalesce(1)
                            .write.mode("errorifexists")
                            .parquet(join(staging, UNDECODABLE_DIR))
                        )
                cdr_url = join(staging, CDR_DIR)
                if has_rows:
                    fs.rename(in_url, cdr_url)
                else:  # an empty range still has its (empty) cdr/
                    with_partitions(rows).write.mode("errorifexists").options(
                        **CDR_PARQUET_OPTIONS
                    ).partitionBy(*PARTITION_COLUMNS).parquet(cdr_url)
                fs.delete(sorted_url)
            summary["stage_seconds"] = stage.seconds
            summary["seconds"] = round(time.monotonic() - started, 3)
            manifest = _manifest(plan, run_id, counts, summary, ctx)
            fs.write_text(join(staging, MANIFEST), json.dumps(manifest, indent=2) + "\n")
            fs.write_text(join(staging, SUCCESS), "")
            manifest["path"] = fs.publish(staging, plan.range_id, run_id)
        except Exception as exc:
            _discard(fs, staging)
            if isinstance(exc, ReplayFailedError):
                raise
            unknown = unknown_id_in(str(exc))
            why = (
                f"a record carries schema id {unknown}, not registered under the topic's subject"
                if unknown is not None
                else f"{type(exc).__name__}: {_first_line(exc)}"
            )
            msg = (
                f"replay of [{iso(plan.start)}, {iso(plan.end)}) failed ({why}); "
                "the previous output, if any, is untouched"
            )
            raise ReplayFailedError(msg) from exc
    log.info(
        "replay done run_id=%s path=%s records=%s seconds=%s",
        run_id,
        manifest["path"],
        manifest["counts"]["records"],
        summary["seconds"],
    )
    return manifest


def _no_rows(spark: SparkSession, decoded: DataFrame) -> DataFrame:
    """No records, with the decoded columns (an empty range)."""
    return spark.createDataFrame([], decoded.schema)


def _write_table(
    spark: SparkSession,
    table: DataFrame,
    url: str,
    totals: Callable[[SparkSession, str], dict[str, Any]],
) -> dict[str, Any]:
    """A small aggregate as one Parquet file (aggregated in parallel, then gathered);
    returns its ``totals`` for the summary."""
    table.repartition(1).write.mode("errorifexists").parquet(url)
    return totals(spark, url)


def _read_sorted(spark: SparkSession, fs: HadoopFs, url: str, decoded: DataFrame) -> DataFrame:
    """The staging rows with their ``where``; none at all when nothing was read."""
    if any(name.startswith(f"{WHERE}=") for name in fs.children(url)):
        return spark.read.parquet(url)
    return _no_rows(spark, decoded).withColumn(WHERE, F.lit("in"))


def _discard(fs: HadoopFs, staging: str) -> None:
    try:
        fs.delete(staging)
    except Exception:  # the original error matters more
        log.exception("could not remove the staging folder path=%s", staging)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _counts(sorted_rows: DataFrame, plan: ReplayPlan) -> dict[str, Any]:
    """Per partition and schema id: records read, before, in and after the range
    (``sorted_rows`` carries the ``where`` column)."""
    rows = (
        sorted_rows.groupBy("kafka_partition", "schema_id", WHERE)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.min("kafka_offset").alias("lo"),
            F.max("kafka_offset").alias("hi"),
        )
        .collect()
    )
    parts: dict[int, dict[str, Any]] = {
        s.partition: {
            "partition": s.partition,
            "start_offset": s.start,
            "end_offset": s.end,
            "read": 0,
            "in_range": 0,
            "first_offset_read": None,
            "last_offset_read": None,
        }
        for s in plan.spans
    }
    schema_ids: dict[str, int] = {}
    totals = {"read": 0, "before_range": 0, "records": 0, "after_range": 0, "undecodable": 0}
    for r in rows:
        p = parts[int(r["kafka_partition"])]
        n = int(r["n"])
        p["read"] += n
        lo, hi = int(r["lo"]), int(r["hi"])
        p["first_offset_read"] = (
            lo if p["first_offset_read"] is None else min(lo, p["first_offset_read"])
        )
        p["last_offset_read"] = (
            hi if p["last_offset_read"] is None else max(hi, p["last_offset_read"])
        )
        totals["read"] += n
        key = {
            "before": "before_range",
            "in": "records",
            "after": "after_range",
            "undecodable": "undecodable",
        }[r["where"]]
        totals[key] += n
        if r["where"] == "in":
            p["in_range"] += n
            sid = str(r["schema_id"])
            schema_ids[sid] = schema_ids.get(sid, 0) + n
    return {
        "totals": totals,
        "partitions": [parts[k] for k in sorted(parts)],
        "schema_ids": dict(sorted(schema_ids.items())),
    }


def _billing_totals(spark: SparkSession, url: str) -> dict[str, Any]:
    """Callers and revenue of the range, from its (small) billing table: every record of
    the range is in exactly one billing row (its caller's), so no pass over the records."""
    row = (
        spark.read.parquet(url)
        .agg(F.countDistinct("caller_num").alias("callers"), F.sum("revenue").alias("revenue"))
        .first()
    )
    return {
        "callers": int(row["callers"]) if row else 0,
        "revenue": round(float(row["revenue"] or 0.0), 4) if row else 0.0,
    }


def _network_totals(spark: SparkSession, url: str) -> dict[str, Any]:
    """Towers of the range, from its tower health table."""
    row = spark.read.parquet(url).agg(F.countDistinct("tower_id").alias("towers")).first()
    return {"towers": int(row["towers"]) if row else 0}


def _manifest(
    plan: ReplayPlan,
    run_id: str,
    counts: dict[str, Any],
    summary: dict[str, Any],
    ctx: ReplayContext,
) -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION,
        "run_id": run_id,
        "range": {
            "from": iso(plan.start),
            "to": iso(plan.end),
            "from_ms": to_ms(plan.start),
            "to_ms": to_ms(plan.end),
            "lateness_margin_s": int(plan.margin.total_seconds()),
        },
        "topic": plan.topic,
        "planned_at": iso(plan.planned_at),
        "finished_at": iso(datetime.now(UTC)),
        "partitions": counts["partitions"],
        "counts": counts["totals"],
        "schema_ids": counts["schema_ids"],
        "summary": summary,
        "outputs": {
            "cdr": CDR_DIR,
            "billing_report": BILLING_DIR,
            "network_health": NETWORK_DIR,
            "partitioned_by": PARTITION_COLUMNS,
        },
        "aggregation": {
            "window": ctx.aggregate.window,
            "low_signal_threshold": ctx.aggregate.low_signal_threshold,
            "rates": {
                "voice_per_minute": ctx.aggregate.rate_voice_per_minute,
                "sms_each": ctx.aggregate.rate_sms_each,
                "data_per_mb": ctx.aggregate.rate_data_per_mb,
                "currency": ctx.aggregate.currency,
            },
        },
    }


def read_manifest(spark: SparkSession, root: str, plan_or_id: ReplayPlan | str) -> dict[str, Any]:
    """The manifest of a published range (``FileNotFoundError`` when there is none)."""
    rid = plan_or_id.range_id if isinstance(plan_or_id, ReplayPlan) else plan_or_id
    fs = HadoopFs(spark, root)
    url = join(fs.root, rid, MANIFEST)
    if not fs.exists(url):
        raise FileNotFoundError(url)
    loaded: dict[str, Any] = json.loads(fs.read_text(url))
    loaded["path"] = join(fs.root, rid)
    return loaded
