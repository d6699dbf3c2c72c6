"""``kappa stack up | down | status``: the embedded local stack."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import click

from kappa.exceptions import KappaError
from kappa.settings import StackSettings, TopicSettings
from kappa.stack import LocalStack, ServiceStatus

T = TypeVar("T")

EPILOG = (
    "Settings: KAPPA_STATE_DIR (logs, data, pids; default .kappa), KAPPA_DEPS_DIR "
    "(artifacts of `make install`), KAPPA_KAFKA_PORT, KAPPA_CONTROLLER_PORT, "
    "KAPPA_REGISTRY_PORT, KAPPA_HDFS_NAMENODE_PORT, KAPPA_HDFS_HTTP_PORT, "
    "KAPPA_PROMETHEUS_PORT, KAPPA_JAVA_HOME, KAPPA_REGISTRY_JAVA_HOME, "
    "KAPPA_START_TIMEOUT_S, KAPPA_KAFKA_HEAP, KAPPA_REGISTRY_HEAP, KAPPA_HDFS_HEAP; "
    "topics from KAPPA_TOPIC_*."
)


def _guard(action: Callable[[], T]) -> T:
    """Run ``action``; a KappaError becomes one line on stderr and exit status 1."""
    try:
        return action()
    except KappaError as exc:
        raise click.ClickException(str(exc)) from exc


def _stack() -> LocalStack:
    return LocalStack(StackSettings(), TopicSettings())


def _print_table(rows: list[ServiceStatus]) -> None:
    header = ("SERVICE", "PORT", "PID", "HEALTH", "URL")
    table = [header] + [
        (r.name, str(r.port or "-"), str(r.pid or "-"), r.health, r.url or "-") for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.group(epilog=EPILOG)
def stack() -> None:
    """The embedded local stack: Kafka (KRaft) and the Schema Registry as local JVMs."""


@stack.command()
@click.option("--with-hdfs", is_flag=True, help="also start an HDFS NameNode and DataNode")
@click.option("--with-monitoring", is_flag=True, help="also start Prometheus (Debian's package)")
def up(with_hdfs: bool, with_monitoring: bool) -> None:
    """Start the stack (what runs already is left alone) and create the topics."""
    local = _stack()
    began = time.monotonic()
    rows = _guard(lambda: local.up(with_hdfs=with_hdfs, with_monitoring=with_monitoring))
    _print_table(rows)
    click.echo(
        f"stack up in {time.monotonic() - began:.1f} s; "
        f"KAPPA_KAFKA_BOOTSTRAP={local.kafka.bootstrap()} "
        f"KAPPA_SCHEMA_REGISTRY_URL={local.registry.url()}"
        + (f" HDFS={local.hdfs_url()}" if with_hdfs else "")
    )
    click.echo(f"logs and data under {local.layout.state_dir}; stop with `kappa stack down`")


@stack.command()
def down() -> None:
    """Stop every service of the stack; data stays in the state folder."""
    local = _stack()
    stopped = _guard(local.down)
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object, for scripts")
def status(as_json: bool) -> None:
    """Each service with its port, pid and health.

    Exit status 1 unless Kafka and the registry are both up.
    """
    local = _stack()
    rows = _guard(local.status)
    if as_json:
        payload = {
            "state_dir": str(local.layout.state_dir),
            "services": [r.as_dict() for r in rows],
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        _print_table(rows)
    core = {r.name: r.health for r in rows}
    if core.get("kafka") != "up" or core.get("registry") != "up":
        sys.exit(1)
