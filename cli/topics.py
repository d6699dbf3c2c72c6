"""``kappa topics``: how many records each pipeline topic holds."""

from __future__ import annotations

import json

import click

from kappa.settings import KafkaSettings, TopicSettings
from kappa.topics import count


@click.command()
@click.option("--exact", is_flag=True, help="count committed records by reading them (slower)")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, for scripts")
@click.argument("names", nargs=-1)
def topics(exact: bool, as_json: bool, names: tuple[str, ...]) -> None:
    """Records per topic (default: every pipeline topic)."""
    wanted = list(names) or TopicSettings().all()
    rows = count(KafkaSettings(), wanted, exact=exact)
    if as_json:
        for r in rows:
            click.echo(
                json.dumps(
                    {
                        "topic": r.topic,
                        "partitions": r.partitions,
                        "offsets": r.offsets,
                        "records": r.records,
                    }
                )
            )
        return
    click.echo(f"{'TOPIC':<18} {'PARTITIONS':>10} {'OFFSETS':>10} {'RECORDS':>10}")
    for r in rows:
        records = "-" if r.records is None else f"{r.records:,}"
        click.echo(f"{r.topic:<18} {r.partitions:>10} {r.offsets:>10,} {records:>10}")
