"""``kappa stack up | down | status``: the embedded local stack."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import click

from kappa.exceptions import KappaError
from kappa.settings import StackSettings, TopicSettings
from stack import LocalStack, ServiceStatus
from stack.cluster import ClusterStack

T = TypeVar("T")

EPILOG = (
    "Settings: KAPPA_STATE_DIR (logs, data, pids; default .kappa), KAPPA_DEPS_DIR "
    "(artifacts of `make install`), KAPPA_KAFKA_PORT, KAPPA_CONTROLLER_PORT, "
    "KAPPA_REGISTRY_PORT, KAPPA_HDFS_NAMENODE_PORT, KAPPA_HDFS_HTTP_PORT, "
    "KAPPA_PROMETHEUS_PORT, KAPPA_JAVA_HOME, KAPPA_REGISTRY_JAVA_HOME, "
    "KAPPA_START_TIMEOUT_S, KAPPA_KAFKA_HEAP, KAPPA_REGISTRY_HEAP, KAPPA_HDFS_HEAP; "
    "topics from KAPPA_TOPIC_*; the cluster's ports and sizes from KAPPA_CLUSTER_* "
    "(`kappa settings`)."
)


def _guard(action: Callable[[], T]) -> T:
    """Run ``action``; a KappaError becomes one line on stderr and exit status 1."""
    try:
        return action()
    except KappaError as exc:
        raise click.ClickException(str(exc)) from exc


def _stack() -> LocalStack:
    return LocalStack(StackSettings(), TopicSettings())


def _cluster(local: LocalStack) -> ClusterStack:
    """The cluster of the same state folder: the recorded one, else on KAPPA_CLUSTER_*."""
    return ClusterStack.of(local.settings, local.topics)


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
    """The embedded local stack: Kafka (KRaft) and the Schema Registry as local JVMs.

    With `up --cluster`: a multi-node cluster of Kafka, Spark and HDFS on loopback.
    """


@stack.command()
@click.option("--with-hdfs", is_flag=True, help="also start an HDFS NameNode and DataNode")
@click.option("--with-monitoring", is_flag=True, help="also start Prometheus (Debian's package)")
@click.option(
    "--cluster",
    "as_cluster",
    is_flag=True,
    help="the multi-node cluster instead: three Kafka nodes, the registry, a Spark master "
    "and two workers, an HDFS NameNode and two DataNodes (ports: KAPPA_CLUSTER_*)",
)
def up(with_hdfs: bool, with_monitoring: bool, as_cluster: bool) -> None:
    """Start the stack (what runs already is left alone) and create the topics."""
    local = _stack()
    began = time.monotonic()
    if as_cluster:
        _up_cluster(local, with_monitoring, began)
        return
    rows = _guard(lambda: local.up(with_hdfs=with_hdfs, with_monitoring=with_monitoring))
    _print_table(rows)
    click.echo(
        f"stack up in {time.monotonic() - began:.1f} s; "
        f"KAPPA_KAFKA_BOOTSTRAP={local.kafka.bootstrap()} "
        f"KAPPA_SCHEMA_REGISTRY_URL={local.registry.url()}"
        + (f" HDFS={local.hdfs_url()}" if with_hdfs else "")
    )
    click.echo(f"logs and data under {local.layout.state_dir}; stop with `kappa stack down`")


def _up_cluster(local: LocalStack, with_monitoring: bool, began: float) -> None:
    cluster = _cluster(local)
    rows = _guard(cluster.up)
    if with_monitoring:
        _guard(local.up_monitoring)
    _print_table(rows)
    click.echo(f"cluster up in {time.monotonic() - began:.1f} s; point the pipeline at it with")
    for name, value in cluster.env().items():
        click.echo(f"{name}={shlex.quote(value)}")
    click.echo(f"HDFS={cluster.hdfs_url()} (web {cluster.namenode.http_url()})")
    click.echo(f"Spark master web UI: {cluster.master.master_web_url()}")
    click.echo(f"logs and data under {cluster.layout.state_dir}; stop with `kappa stack down`")


@stack.command()
def down() -> None:
    """Stop every service of the stack and every node of the cluster; data stays."""
    local = _stack()
    stopped = _guard(local.down)
    cluster_stopped = _guard(_cluster(local).down)
    if not stopped and not cluster_stopped:
        click.echo("nothing was running")
        return
    if stopped:
        click.echo(f"stopped: {', '.join(stopped)}")
    if cluster_stopped:
        click.echo(f"stopped (cluster): {', '.join(cluster_stopped)}")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object, for scripts")
def status(as_json: bool) -> None:
    """Each service with its port, pid and health; each node of the cluster, if recorded.

    HDFS and Prometheus are listed when running or asked for by an `up` since the
    last `down`. Exit status 1 unless every service listed is up (Kafka and the
    registry always are); with a cluster recorded by `up --cluster`, unless every
    node of it is up (and the single stack, if it runs, is up).
    """
    local = _stack()
    cluster = _cluster(local)
    rows = _guard(local.status)
    with_cluster = cluster.recorded()
    cluster_rows = _guard(cluster.status) if with_cluster else []
    show_single = not with_cluster or any(r.pid is not None for r in rows)
    if as_json:
        payload: dict[str, object] = {
            "state_dir": str(local.layout.state_dir),
            "services": [r.as_dict() for r in rows] if show_single else [],
        }
        if with_cluster:
            payload["cluster"] = {
                "state_dir": str(cluster.layout.state_dir),
                "services": [r.as_dict() for r in cluster_rows],
            }
        click.echo(json.dumps(payload, indent=2))
    else:
        if show_single:
            _print_table(rows)
        if with_cluster:
            if show_single:
                click.echo("")
            click.echo(f"cluster ({cluster.layout.state_dir}):")
            _print_table(cluster_rows)
    # Every row listed (Kafka, the registry, and HDFS or Prometheus when asked for) is up.
    names = {r.name for r in rows}
    single_ok = {"kafka", "registry"} <= names and all(r.health == "up" for r in rows)
    cluster_ok = all(r.health == "up" for r in cluster_rows)
    ok = (cluster_ok and (single_ok or not show_single)) if with_cluster else single_ok
    if not ok:
        sys.exit(1)
