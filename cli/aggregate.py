"""``kappa aggregate``: the Spark Structured Streaming job, and a reader of its tables."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.options import env_help
from kappa.settings import (
    AggregateSettings,
    KafkaSettings,
    RegistrySettings,
    StackSettings,
    TopicSettings,
)
from monitoring import metrics
from streams.aggregate.job import check_source, reset, run
from streams.aggregate.listener import MetricsListener
from streams.aggregate.paths import Paths
from streams.aggregate.read import top_callers, worst_towers
from streams.spark import session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from streams.aggregate.window_sink import BatchCounts


@click.command()
@click.option(
    "--master",
    default=None,
    help=env_help(
        "Spark master, e.g. local[2] or spark://host:7077 (default local[2])",
        AggregateSettings,
        "master",
    ),
)
@click.option(
    "--output",
    default=None,
    help=env_help(
        "root of the Parquet tables: a path or an hdfs:// URL (default <state_dir>/aggregate)",
        AggregateSettings,
        "output",
    ),
)
@click.option(
    "--trigger",
    default=None,
    help=env_help("micro-batch interval, e.g. '30 seconds'", AggregateSettings, "trigger"),
)
@click.option(
    "--available-now",
    "--until-idle",
    "available_now",
    is_flag=True,
    help="drain what the topic holds now, write every window the watermark closed, "
    "then stop (tests, demo, backfill)",
)
@click.option(
    "--show",
    "show_only",
    is_flag=True,
    help="do not run: print top callers by revenue and worst-signal towers from the Parquet tables",
)
@click.option(
    "--reset-checkpoint",
    is_flag=True,
    help="start over: move the checkpoint to <checkpoint>.reset-<time> and the tables it "
    "fed to <output>/_reset-<time>/, then rebuild them from the topic (needed when the "
    "checkpoint was written by another shape of the query)",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="rows per table for --show and the closing summary",
)
def aggregate(
    *,
    master: str | None,
    output: str | None,
    trigger: str | None,
    available_now: bool,
    show_only: bool,
    reset_checkpoint: bool,
    top: int,
) -> None:
    """Windowed billing and tower health from cdr.valid (5-min windows, 10-min watermark).

    Spark Structured Streaming keeps the open windows in its state store (RocksDB by
    default) under the checkpoint. Writes billing_realtime/, network_realtime/ and late/
    (the rows Spark's watermark dropped) as Parquet, and the same rows to cdr.billing.5m,
    cdr.network.5m and cdr.late (Avro). Output and checkpoint may be hdfs:// URLs.
    """
    settings = AggregateSettings()
    stack = StackSettings()
    paths = Paths.resolve(settings, stack, output)
    if show_only:
        _show(settings, stack, paths.output, top, master)
        return
    kafka, registry, topics = KafkaSettings(), RegistrySettings(), TopicSettings()
    check_source(kafka, topics)  # clear messages before paying for Spark's start-up
    metrics.serve(
        settings.metrics_port,
        settings.metrics_host,
        prefixes=("kappa_aggregate_", "kappa_business_"),
    )
    spark = session(settings, stack, master=master)
    spark.streams.addListener(MetricsListener())
    if reset_checkpoint:
        _reset(spark, paths)
    history = _run_until_stopped(
        lambda stop: run(
            spark,
            settings,
            kafka=kafka,
            registry=registry,
            topics=topics,
            stack=stack,
            output=output,
            trigger=trigger,
            until_idle=available_now,
            stop=stop,
        )
    )
    click.echo(
        f"{len(history)} micro-batches: "
        f"{sum(h.billing_rows for h in history):,} billing rows, "
        f"{sum(h.network_rows for h in history):,} tower rows, "
        f"{sum(h.late_rows for h in history):,} late CDRs captured, "
        f"{sum(h.undecodable_rows for h in history):,} undecodable; "
        f"output {paths.output}"
    )
    _print_tables(spark, paths.output, top, settings.currency)
    spark.stop()


def _reset(spark: SparkSession, paths: Paths) -> None:
    moved = reset(spark, paths)
    click.echo(
        f"checkpoint {paths.checkpoint} "
        + (f"moved to {moved.checkpoint}" if moved.checkpoint else "did not exist")
        + (f"; tables moved to {', '.join(moved.tables)}" if moved.tables else ""),
        err=True,
    )


def _run_until_stopped(
    job: Callable[[threading.Event], list[BatchCounts]],
) -> list[BatchCounts]:
    """``job(stop)`` until it ends; SIGTERM sets ``stop`` (the query drains and stops),
    Ctrl-C stops at once."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return job(stop)
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
        return []
    finally:
        signal.signal(signal.SIGTERM, previous)


def _show(
    settings: AggregateSettings, stack: StackSettings, output: str, top: int, master: str | None
) -> None:
    if "://" not in output and not Path(output).exists():
        msg = f"no aggregation output at {output}; run `kappa aggregate` first"
        raise click.ClickException(msg)
    spark = session(settings, stack, app_name="kappa-aggregate-show", master=master)
    try:
        _print_tables(spark, output, top, settings.currency)
    finally:
        spark.stop()


def _print_tables(spark: Any, output: str, top: int, currency: str) -> None:
    callers = top_callers(spark, output, top)
    towers = worst_towers(spark, output, top)
    click.echo(f"\nTop callers by revenue ({currency}), closed windows:")
    click.echo(
        f"  {'caller':<14} {'revenue':>12} {'calls':>7} {'minutes':>8} {'sms':>6} "
        f"{'data MB':>9} {'windows':>8}"
    )
    for r in callers:
        click.echo(
            f"  {r['caller_num']:<14} {r['revenue']:>12,.4f} {r['calls']:>7,} "
            f"{r['billable_minutes']:>8,} {r['sms_count']:>6,} "
            f"{r['data_volume_kb'] / 1024:>9,.1f} {r['windows']:>8,}"
        )
    if not callers:
        click.echo("  (no closed window yet)")
    click.echo("\nTowers with the worst signal (lowest average, closed windows):")
    click.echo(
        f"  {'tower':<10} {'avg signal':>10} {'low share':>10} {'events':>8} {'callers/window':>15}"
    )
    for r in towers:
        click.echo(
            f"  {r['tower_id']:<10} {r['avg_signal']:>10.3f} "
            f"{r['low_signal_share']:>10.1%} {r['events']:>8,} "
            f"{r['avg_distinct_callers']:>15.1f}"
        )
    if not towers:
        click.echo("  (no closed window yet)")
