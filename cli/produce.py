"""``kappa produce``: realistic CDRs into ``cdr.raw``, with fault injection."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import click

from cli.options import UTC_TIME, env_help
from kappa.progress import ProgressLine
from kappa.settings import KafkaSettings, ProducerSettings, RegistrySettings, TopicSettings
from monitoring import metrics
from producers.clock import Clock, SimulatedClock, WallClock
from producers.exceptions import BadOptionError
from producers.generator import FaultRates
from producers.run import ProduceRequest, ProduceStats
from producers.run import produce as run_produce
from producers.workers import produce_in_workers

F = TypeVar("F", bound=Callable[..., Any])


def share_option(name: str, help_text: str) -> Callable[[F], F]:
    """A fraction of the records, 0 to 1, default 0."""
    return click.option(
        name, type=click.FloatRange(0, 1), default=0.0, show_default=True, help=help_text
    )


@click.command()
@click.option(
    "--rate",
    type=float,
    default=None,
    help=env_help(
        "records per second; 0 for as fast as possible (default 10)", ProducerSettings, "rate"
    ),
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="stop after N records")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="stop after N seconds",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help=env_help("random seed; same seed, same records", ProducerSettings, "seed"),
)
@share_option(
    "--bad-rate", "share of records failing a rule (every rule, undecodable bytes included)"
)
@share_option("--duplicate-rate", "share of records repeating a recent call_id")
@share_option(
    "--late-rate",
    "share of valid records whose event time lags 16-45 min (past the watermark)",
)
@click.option(
    "--clock",
    type=click.Choice(["wall", "simulated"]),
    default="wall",
    show_default=True,
    help="event time from the wall clock or a simulated one",
)
@click.option(
    "--start", type=UTC_TIME, default=None, help="simulated clock: first event time (ISO-8601, UTC)"
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="simulated clock: event-time seconds per wall second",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help=env_help(
        "producer processes sharing the rate and the count, each its own record stream "
        "of the seed (one process is bound by its CPU; default 1)",
        ProducerSettings,
        "workers",
    ),
)
@click.option("--topic", default=None, help="target topic (default: KAPPA_TOPIC_RAW)")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def produce(  # noqa: PLR0917 - click passes every option by position
    rate: float | None,
    count: int | None,
    duration: float | None,
    seed: int | None,
    bad_rate: float,
    duplicate_rate: float,
    late_rate: float,
    clock: str,
    start: datetime | None,
    speed: float,
    workers: int | None,
    topic: str | None,
    as_json: bool,
) -> None:
    """Produce CDRs to cdr.raw (Avro, Confluent wire format, idempotent, acks=all).

    The key is the call_id; the message timestamp is the event time.
    """
    defaults = ProducerSettings()
    req = _request(defaults, rate, count, duration, seed, bad_rate, duplicate_rate, late_rate)
    req = replace(req, clock=_clock(clock, start, speed, req.rate), topic=topic)
    metrics.serve(defaults.metrics_port, defaults.metrics_host, prefixes=("kappa_producer_",))
    workers = defaults.workers if workers is None else workers
    with ProgressLine("produced", count, unit="CDRs", enabled=False if as_json else None) as line:
        if workers > 1:
            stats = produce_in_workers(
                KafkaSettings(),
                RegistrySettings(),
                TopicSettings(),
                req,
                workers,
                on_progress=lambda s: line.update(s.sent),
            )
        else:
            stats = run_produce(
                KafkaSettings(),
                RegistrySettings(),
                TopicSettings(),
                req,
                on_progress=lambda s: line.update(s.sent),
            )
    _summary(stats, req.seed, topic or TopicSettings().raw, as_json, workers)


def _request(  # noqa: PLR0917 - the command's options, checked
    defaults: ProducerSettings,
    rate: float | None,
    count: int | None,
    duration: float | None,
    seed: int | None,
    bad_rate: float,
    duplicate_rate: float,
    late_rate: float,
) -> ProduceRequest:
    """The request the options describe (wall clock), or ``BadOptionError`` naming the flag."""
    rate = defaults.rate if rate is None else rate
    if rate < 0:
        msg = f"--rate must be 0 or more, got {rate}"
        raise BadOptionError(msg)
    seed = seed if seed is not None else defaults.seed
    seed = seed if seed is not None else secrets.randbits(32)
    faults = FaultRates(bad=bad_rate, duplicate=duplicate_rate, late=late_rate)
    try:
        faults.check()
    except ValueError as exc:
        raise BadOptionError(str(exc)) from exc
    if count is None and duration is None:
        msg = "give --count N or --duration SECONDS"
        raise BadOptionError(msg)
    return ProduceRequest(
        rate=rate, count=count, duration_s=duration, seed=seed, faults=faults, clock=WallClock()
    )


def _in(workers: int) -> str:
    return f", {workers} workers" if workers > 1 else ""


def _clock(kind: str, start: datetime | None, speed: float, rate: float) -> Clock:
    """The event-time clock the flags ask for; a message naming the flag otherwise."""
    if kind == "simulated":
        if start is None:
            msg = "--clock simulated needs --start"
            raise BadOptionError(msg)
        if rate == 0:
            msg = "--clock simulated needs a --rate above 0 (event time moves speed/rate a record)"
            raise BadOptionError(msg)
        return SimulatedClock(start=start, speed=speed, rate=rate)
    if start is not None:
        msg = "--start only applies to --clock simulated"
        raise BadOptionError(msg)
    return WallClock()


def _summary(stats: ProduceStats, seed: int, topic: str, as_json: bool, workers: int) -> None:
    faults = {k: v for k, v in sorted(stats.by_kind.items()) if k not in ("valid", "late")}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "topic": topic,
                    "seed": seed,
                    "workers": workers,
                    "sent": stats.sent,
                    "delivered": stats.delivered,
                    "errors": stats.errors,
                    "seconds": round(stats.seconds, 3),
                    "rate": round(stats.rate, 1),
                    "kinds": dict(sorted(stats.by_kind.items())),
                }
            )
        )
        return
    click.echo(
        f"produced {stats.sent:,} records to {topic} in {stats.seconds:.1f} s "
        f"({stats.rate:,.0f}/s, seed {seed}{_in(workers)}): "
        f"{stats.by_kind.get('valid', 0):,} valid, "
        f"{stats.by_kind.get('late', 0):,} late, {sum(faults.values()):,} faulty"
    )
    for kind, n in faults.items():
        click.echo(f"  {kind:<32} {n:>8,}")
