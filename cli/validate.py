"""``kappa validate``, ``kappa dlq tail|redrive``, ``kappa ledger``, ``kappa quality report``."""

from __future__ import annotations

import json
import signal
import threading
from datetime import datetime
from types import FrameType

import click

from cli.options import UTC_TIME, env_help
from kappa.exceptions import EXIT_FAILED
from kappa.progress import ProgressLine
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings, ValidatorSettings
from schemas.rules import RULE_NAMES

_RULE = click.Choice(RULE_NAMES)


@click.command()
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help=env_help("records per micro-batch, at most", ValidatorSettings, "batch_size"),
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=env_help(
        "seconds a micro-batch waits to fill, at most", ValidatorSettings, "batch_seconds"
    ),
)
@click.option(
    "--max-idle",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="stop after SECONDS without a new record",
)
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="stop once every assigned partition of cdr.raw has been judged to its end",
)
@click.option("--json", "as_json", is_flag=True, help="print the final summary as JSON")
def validate(
    batch_size: int | None,
    batch_seconds: float | None,
    max_idle: float | None,
    until_caught_up: bool,
    as_json: bool,
) -> None:
    """Judge every cdr.raw record once: Cdr to cdr.valid or DeadLetter to cdr.dlq.

    Exactly once (Kafka transactions). Runs until SIGTERM/SIGINT (it finishes or aborts
    the batch in flight), --max-idle or --until-caught-up. Metrics on
    KAPPA_VALIDATOR_METRICS_PORT (9102).
    """
    from monitoring import metrics
    from streams.validate.job import run

    base = ValidatorSettings()
    updates: dict[str, object] = {}
    if batch_size is not None:
        updates["batch_size"] = batch_size
    if batch_seconds is not None:
        updates["batch_seconds"] = batch_seconds
    settings = base.model_copy(update=updates) if updates else base
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        click.echo(f"signal {signal.Signals(signum).name}: finishing the batch in flight", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    metrics.serve(settings.metrics_port, settings.metrics_host, prefixes=("kappa_validator_",))
    with ProgressLine("judged", unit="CDRs", enabled=False if as_json else None) as line:
        stats = run(
            KafkaSettings(),
            RegistrySettings(),
            TopicSettings(),
            settings,
            stop=stop,
            max_idle_s=max_idle,
            until_caught_up=until_caught_up,
            on_batch=lambda s: line.update(s.records_in),
        )
    if as_json:
        click.echo(json.dumps(stats.as_dict()))
        return
    click.echo(
        f"judged {stats.records_in:,} records in {stats.batches:,} batches "
        f"({stats.seconds:.1f} s): {stats.valid:,} valid, {stats.dead:,} dead-lettered, "
        f"{stats.aborts} aborted transaction(s)"
    )
    for rule, n in sorted(stats.by_rule.items()):
        click.echo(f"  {rule:<20} {n:>8,}")


@click.group()
def dlq() -> None:
    """Read and redrive the dead-letter topic (cdr.dlq)."""


@dlq.command()
@click.option("--follow", "-f", is_flag=True, help="keep printing dead letters as they arrive")
@click.option("--rule", type=_RULE, default=None, help="only dead letters failing this rule")
@click.option("--since", type=UTC_TIME, default=None, help="only those judged at or after TIME")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="a table, or one JSON object per line",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="print at most N (the last N without --follow)",
)
def tail(
    follow: bool, rule: str | None, since: datetime | None, fmt: str, limit: int | None
) -> None:
    """Show dead letters: judged-at, call_id, rules, observed values, source offset."""

    from streams.validate.dlq import tail as tail_dlq

    views = tail_dlq(
        KafkaSettings(), RegistrySettings(), TopicSettings(), rule=rule, since=since, follow=follow
    )
    if fmt == "table":
        click.echo(f"{'judged_at':<25} {'call_id':<36}  {'rules':<28} {'source':<22} observed")
    if not follow and limit is not None:
        # The last N by judging time, across partitions.
        ordered = sorted(views, key=lambda v: (v.judged_at, v.dlq_partition, v.dlq_offset))
        views = iter(ordered[-limit:])
    for shown, view in enumerate(views, start=1):
        _print_view(view, fmt)
        if limit is not None and shown >= limit:
            break


def _print_view(view: object, fmt: str) -> None:
    from streams.validate.dlq import DeadLetterView

    assert isinstance(view, DeadLetterView)
    data = view.as_json()
    if fmt == "json":
        click.echo(json.dumps(data))
        return
    observed = "; ".join(
        f"{f['column'] or '-'}={f['observed'] if f['observed'] is not None else 'null'}"
        for f in data["failures"]
    )
    click.echo(
        f"{data['judged_at'][:23]:<25} {data['call_id'] or '-':<36}  "
        f"{','.join(data['rules']):<28} {data['source']:<22} {observed[:120]}"
    )


@dlq.command()
@click.option("--rule", type=_RULE, default=None, help="only dead letters that failed this rule")
@click.option("--since", type=UTC_TIME, default=None, help="only those judged at or after TIME")
@click.option("--dry-run", is_flag=True, help="judge and report by rule, write nothing")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def redrive(rule: str | None, since: datetime | None, dry_run: bool, as_json: bool) -> None:
    """Re-judge dead letters with the current suite; those now valid go to cdr.valid once.

    The suite is the one the KAPPA_VALIDATOR_* settings describe (suite version,
    disabled rules). Redriven records are never dead-lettered again; a second
    redrive adds nothing.
    """
    from streams.validate.dlq import redrive as run_redrive

    report = run_redrive(
        KafkaSettings(),
        RegistrySettings(),
        TopicSettings(),
        ValidatorSettings(),
        rule=rule,
        since=since,
        dry_run=dry_run,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    verb = "would move" if dry_run else "moved"
    click.echo(
        f"suite {report.suite_version}: {report.candidates:,} dead letters judged again, "
        f"{verb} {report.moved_total:,} to cdr.valid, {report.already_valid:,} already "
        "there"
    )
    click.echo(f"  {'original rule':<20} {verb:>10} {'still failing':>14}")
    for r in sorted(set(report.moved) | set(report.still_failing)):
        click.echo(f"  {r:<20} {report.moved[r]:>10,} {report.still_failing[r]:>14,}")


@click.command()
@click.option("--from", "start", type=UTC_TIME, default=None, help="range start (message time)")
@click.option("--to", "end", type=UTC_TIME, default=None, help="range end, exclusive")
@click.option(
    "--partition",
    type=click.IntRange(min=0),
    default=None,
    help="a raw partition, with --from-offset/--to-offset",
)
@click.option("--from-offset", type=click.IntRange(min=0), default=None, help="first raw offset")
@click.option(
    "--to-offset", type=click.IntRange(min=0), default=None, help="raw offset to stop at, exclusive"
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def ledger(  # noqa: PLR0917
    start: datetime | None,
    end: datetime | None,
    partition: int | None,
    from_offset: int | None,
    to_offset: int | None,
    as_json: bool,
) -> None:
    """Check that each raw offset of a range is in exactly one of cdr.valid and cdr.dlq.

    Exits 1 when the ledger does not balance (3: Kafka cannot be reached).
    """
    from streams.validate.exceptions import ValidatorError
    from streams.validate.ledger import ledger as run_ledger

    if partition is None and (from_offset is not None or to_offset is not None):
        msg = "--from-offset/--to-offset need --partition"
        raise ValidatorError(msg)
    report = run_ledger(
        KafkaSettings(),
        RegistrySettings(),
        TopicSettings(),
        start=start,
        end=end,
        partition=partition,
        from_offset=from_offset,
        to_offset=to_offset,
    )
    data = report.as_dict()
    if as_json:
        click.echo(json.dumps(data))
    else:
        ranges = ", ".join(f"p{p}:[{a},{b})" for p, (a, b) in sorted(report.ranges.items()))
        click.echo(f"ledger of {report.raw_topic} {ranges}")
        click.echo(f"  raw records      {report.raw:>10,}")
        click.echo(f"  valid            {report.valid:>10,}")
        click.echo(f"  dead-lettered    {report.dead:>10,}  (redriven since: {report.redriven:,})")
        for rule, n in sorted(report.by_rule.items()):
            click.echo(f"    {rule:<20} {n:>8,}")
        click.echo(f"  in neither       {len(report.missing):>10,}  {data['missing_offsets'][:10]}")
        click.echo(f"  in both          {len(report.doubled):>10,}  {data['doubled_offsets'][:10]}")
        click.echo("  balanced: " + ("yes" if report.balanced else "NO"))
    if not report.balanced:
        raise SystemExit(EXIT_FAILED)


@click.group()
def quality() -> None:
    """Data-quality reports (Great Expectations Data Docs)."""


@quality.command()
@click.option("--from", "start", type=UTC_TIME, default=None, help="range start (message time)")
@click.option("--to", "end", type=UTC_TIME, default=None, help="range end, exclusive")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help=env_help("folder of the GX project and its Data Docs", ValidatorSettings, "quality_dir"),
)
def report(start: datetime | None, end: datetime | None, out: str | None) -> None:
    """Run the suite over the cdr.raw records of a range and build GX Data Docs (HTML)."""
    from pathlib import Path

    from streams.validate.quality import report as run_report

    settings = ValidatorSettings()
    folder = Path(out) if out else settings.quality_dir
    result = run_report(
        KafkaSettings(),
        RegistrySettings(),
        TopicSettings(),
        settings,
        start=start,
        end=end,
        folder=folder,
    )
    click.echo(
        f"{result.records:,} records ({result.undecodable:,} undecodable, not in the "
        f"report), suite {'passed' if result.success else 'failed'}; "
        f"{result.failed_expectations} of {result.expectations} expectations failed"
    )
    click.echo(f"Data Docs: {result.index}")
