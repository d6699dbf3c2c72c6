"""``kappa replay`` and ``kappa parity``: the bounded replay of an event-time range, and its
comparison with the streaming aggregates."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from cli.options import UTC_TIME, env_help
from kappa.settings import AggregateSettings, ReplaySettings, TopicSettings
from monitoring import metrics

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def event_range(f: F) -> F:
    """``--from`` / ``--to``: the half-open event-time range ``[start, end)``."""
    f = click.option(
        "--to",
        "end",
        type=UTC_TIME,
        required=True,
        help="end of the event-time range, exclusive (ISO-8601, UTC)",
    )(f)
    return click.option(
        "--from",
        "start",
        type=UTC_TIME,
        required=True,
        help="start of the event-time range, inclusive (ISO-8601, UTC)",
    )(f)


def topic_option(f: F) -> F:
    return click.option(
        "--topic",
        default=None,
        help=env_help("topic to replay (default cdr.valid)", TopicSettings, "valid"),
    )(f)


@click.command()
@event_range
@click.option(
    "--output",
    default=None,
    metavar="URL",
    help=env_help(
        "root of the outputs: a local path or hdfs://host:port/path; the "
        "range goes to <URL>/<from>_<to>/ (default <state_dir>/replay)",
        ReplaySettings,
        "output",
    ),
)
@topic_option
@click.option(
    "--master",
    default=None,
    help=env_help(
        "Spark master (default: KAPPA_AGGREGATE_MASTER, local[2])", ReplaySettings, "master"
    ),
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help=env_help("stage progress on stderr", ReplaySettings, "progress"),
)
@click.option("--json", "as_json", is_flag=True, help="print the manifest as JSON")
def replay(  # noqa: PLR0917 - click passes options positionally
    start: datetime,
    end: datetime,
    output: str | None,
    topic: str | None,
    master: str | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Replay the event-time range [--from, --to) of cdr.valid into Parquet.

    Reads the offsets that hold the range (message timestamps, minus and plus
    the lateness margin), keeps exactly the records whose event time is in it,
    and writes cdr/ (by event date and hour), billing_report/, network_health/,
    manifest.json and _SUCCESS into a new version of the range, run-<run id>/,
    which the range's CURRENT file then names (replaced atomically). A rerun
    replaces the range's output for readers that follow CURRENT; a failed run
    leaves the previous one intact. Refuses a reversed range, a range not
    closed yet (its end within the lateness margin of now), and one older than
    the topic's retention.
    """
    from replay import runner
    from replay.progress import summary_text

    s = runner.Settings.load()
    try:
        metrics.serve(s.replay.metrics_port, s.replay.metrics_host, prefixes=("kappa_replay_",))
    except OSError as exc:  # another replay holds the port: run without an endpoint
        log.warning("metrics endpoint not started port=%s error=%s", s.replay.metrics_port, exc)
    manifest = runner.replay_range(
        s, start, end, output=output, topic=topic, master=master, progress=progress
    )
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        click.echo(summary_text(manifest))


@click.command()
@event_range
@click.option(
    "--aggregate-output",
    default=None,
    metavar="URL",
    help=env_help(
        "root of the streaming outputs (billing_realtime/, network_realtime/, late/)",
        AggregateSettings,
        "output",
    ),
)
@topic_option
@click.option("--master", default=None, help=env_help("Spark master", ReplaySettings, "master"))
@click.option(
    "--show",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="differences listed per kind and table",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def parity(  # noqa: PLR0917 - click passes options positionally
    start: datetime,
    end: datetime,
    aggregate_output: str | None,
    topic: str | None,
    master: str | None,
    show: int,
    as_json: bool,
) -> None:
    """Compare the streaming aggregates with a replay of [--from, --to), closed windows only.

    Every difference is attributed to late records the aggregation captured, or
    listed as unexplained. Exit status 1 when any difference is unexplained.
    """
    from replay import parity as parity_mod
    from replay import runner

    s = runner.Settings.load()
    spark = runner.spark_session(s, master)
    report = parity_mod.compare(
        spark, s, start, end, aggregate_output=aggregate_output, topic=topic
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.text(show))
    if report.unexplained:
        raise click.exceptions.Exit(1)
