"""The replay job: planned offsets of ``cdr.valid`` → Parquet, through the aggregation's transforms.

Output of a range: a version folder, ``<root>/<range id>/run-<run id>/``, named by the
range's pointer file ``<root>/<range id>/CURRENT`` once whole::

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

Everything is written into a hidden staging folder next to the range and
published by moving it in as a new version and replacing the pointer atomically
(``fs.HadoopFs.publish``): a rerun replaces the range's output for readers that
follow the pointer without a moment when there is none; a failed run leaves the
previous output as it was.

The steps live by concern: ``read`` (the topic, decoding), ``transform`` (where a
record stands, its hour), ``counts`` (what the manifest counts), ``write`` (the
staging folder's contents, the manifest), ``staging`` (lock, recovery, failure).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from replay import staging as staging_mod
from replay.context import ReplayContext, new_run_id
from replay.counts import (
    BillingTotals,
    NetworkTotals,
    RunCounts,
    billing_totals,
    count_rows,
    network_totals,
)
from replay.fs import HadoopFs, join
from replay.manifest import Manifest, Summary
from replay.plan import ReplayPlan, iso
from replay.progress import Progress
from replay.read import decode, decoders_for, read_offsets, undecodable
from replay.transform import WHERE, no_rows, where_col
from replay.write import (
    BILLING_DIR,
    CDR_DIR,
    MANIFEST,
    NETWORK_DIR,
    SORTED_DIR,
    SUCCESS,
    UNDECODABLE_DIR,
    build_manifest,
    write_cdr,
    write_manifest,
    write_sorted,
    write_table,
    write_undecodable,
)
from streams.aggregate import tables
from streams.aggregate.decode import Decoders
from streams.spark import run_concurrently

__all__ = [
    "BILLING_DIR",
    "CDR_DIR",
    "MANIFEST",
    "NETWORK_DIR",
    "SUCCESS",
    "UNDECODABLE_DIR",
    "ReplayContext",
    "Stopwatch",
    "new_run_id",
    "run",
    "run_conf",
]

log = logging.getLogger(__name__)


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


# -- the job ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Staged:
    """A run's staging folder and what it read: the source rows, their decoders, the
    decoded rows, and the sorted Parquet of them."""

    fs: HadoopFs
    url: str
    source: DataFrame
    decoders: Decoders
    decoded: DataFrame

    @property
    def sorted_url(self) -> str:
        return join(self.url, SORTED_DIR)

    @property
    def in_url(self) -> str:
        return join(self.sorted_url, f"{WHERE}=in")


@dataclass(frozen=True)
class _Figures:
    counts: RunCounts
    billing: BillingTotals
    network: NetworkTotals


def run(
    spark: SparkSession, plan: ReplayPlan, ctx: ReplayContext, run_id: str | None = None
) -> Manifest:
    """Replay ``plan`` into ``<root>/<range id>/``; return the manifest.

    Raises ``ReplayFailedError`` (previous output intact, staging removed) when anything fails.
    """
    run_id = run_id or new_run_id()
    started = time.monotonic()
    # Hours, dates and windows are UTC wall-clock ones, whatever the machine's zone.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    fs = HadoopFs(spark, ctx.output_root)
    with staging_mod.locked(fs, plan, run_id):
        staging = staging_mod.staging_url(fs, plan, run_id)
        _log_start(fs, plan, run_id)
        with staging_mod.discarded_on_failure(fs, plan, staging):
            stage = Stopwatch()
            with Progress(spark, enabled=ctx.progress), run_conf(spark):
                staged = _read_and_sort(spark, ctx, plan, fs=fs, staging=staging, stage=stage)
                figures = _count_and_aggregate(spark, ctx, plan, staged, stage)
                _keep_undecodable(staged, figures.counts, stage)
                _make_cdr(spark, staged)
            summary = _summary(figures, stage, started)
            manifest = build_manifest(plan, run_id, figures.counts, summary, ctx)
            write_manifest(fs, staging, manifest)
            manifest = manifest.published_at(fs.publish(staging, plan.range_id, run_id))
    log.info(
        "replay done run_id=%s path=%s records=%s seconds=%s",
        run_id,
        manifest.path,
        manifest.counts.records,
        summary.seconds,
    )
    return manifest


def _log_start(fs: HadoopFs, plan: ReplayPlan, run_id: str) -> None:
    log.info(
        "replay started run_id=%s from=%s to=%s offsets=%s target=%s",
        run_id,
        iso(plan.start),
        iso(plan.end),
        plan.offsets_to_read,
        join(fs.root, plan.range_id),
    )


def _read_and_sort(
    spark: SparkSession,
    ctx: ReplayContext,
    plan: ReplayPlan,
    *,
    fs: HadoopFs,
    staging: str,
    stage: Stopwatch,
) -> _Staged:
    """One pass over the topic: every record read lands in the staging folder by where it
    stands; the in-range part is then cdr/ by a rename, and the counts and aggregates read
    the (columnar, much smaller) Parquet."""
    source = read_offsets(spark, ctx.kafka, plan, ctx.records_per_task)
    decoders = decoders_for(ctx, plan.topic)
    staged = _Staged(fs, staging, source, decoders, decode(source, decoders))
    with stage("read_decode_write"):
        write_sorted(staged.decoded.withColumn(WHERE, where_col(plan)), staged.sorted_url)
    return staged


def _count_and_aggregate(
    spark: SparkSession, ctx: ReplayContext, plan: ReplayPlan, staged: _Staged, stage: Stopwatch
) -> _Figures:
    """Counting, billing and tower health read the Parquet just written and not each
    other: run as three concurrent Spark jobs, one's single-task and planning moments
    are the others' time on the cores."""
    rows = _in_range_rows(spark, staged)
    params = tables.Params.from_settings(ctx.aggregate)
    done = stage.concurrently(
        {
            "count": lambda: count_rows(_read_sorted(spark, staged), plan),
            BILLING_DIR: lambda: write_table(
                spark,
                tables.BILLING.compute(rows, params),
                join(staged.url, BILLING_DIR),
                billing_totals,
            ),
            NETWORK_DIR: lambda: write_table(
                spark,
                tables.NETWORK.compute(rows, params),
                join(staged.url, NETWORK_DIR),
                network_totals,
            ),
        }
    )
    return _Figures(done["count"], done[BILLING_DIR], done[NETWORK_DIR])


def _keep_undecodable(staged: _Staged, counts: RunCounts, stage: Stopwatch) -> None:
    """Errors are data: kept with their coordinates, counted in the manifest."""
    if not counts.totals.undecodable:
        return
    log.warning("undecodable records in the replayed offsets count=%s", counts.totals.undecodable)
    with stage(UNDECODABLE_DIR):
        write_undecodable(
            undecodable(staged.source, staged.decoders), join(staged.url, UNDECODABLE_DIR)
        )


def _make_cdr(spark: SparkSession, staged: _Staged) -> None:
    """``cdr/`` from the sorted in-range records (an empty range still has its empty
    ``cdr/``); the rest of the sorted folder goes."""
    has_rows = staged.fs.exists(staged.in_url)
    empty = no_rows(spark, staged.decoded)
    write_cdr(staged.fs, staged.in_url if has_rows else None, empty, join(staged.url, CDR_DIR))
    staged.fs.delete(staged.sorted_url)


def _summary(figures: _Figures, stage: Stopwatch, started: float) -> Summary:
    return Summary(
        records=figures.counts.totals.records,
        callers=figures.billing.callers,
        towers=figures.network.towers,
        revenue=figures.billing.revenue,
        stage_seconds=stage.seconds,
        seconds=round(time.monotonic() - started, 3),
    )


def _in_range_rows(spark: SparkSession, staged: _Staged) -> DataFrame:
    """The sorted in-range records; none, with the decoded columns, when there are none."""
    if staged.fs.exists(staged.in_url):
        return spark.read.parquet(staged.in_url)
    return no_rows(spark, staged.decoded)


def _read_sorted(spark: SparkSession, staged: _Staged) -> DataFrame:
    """The staging rows with their ``where``; none at all when nothing was read."""
    if any(name.startswith(f"{WHERE}=") for name in staged.fs.children(staged.sorted_url)):
        return spark.read.parquet(staged.sorted_url)
    return no_rows(spark, staged.decoded).withColumn(WHERE, F.lit("in"))
