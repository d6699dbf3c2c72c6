"""``kappa airflow``: a local Airflow 3 running the six-hourly replay DAG."""

from __future__ import annotations

import json
import shlex
import threading
from datetime import datetime
from pathlib import Path

import click
from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry

from cli.options import UTC_TIME, env_help
from kappa.settings import AirflowSettings, StackSettings
from orchestration import local as loc
from orchestration.local import LocalAirflow
from orchestration.runmetrics import TextfileCollector


def _local(port: int | None = None) -> LocalAirflow:
    settings = AirflowSettings(port=port) if port else AirflowSettings()
    return LocalAirflow(settings, StackSettings())


@click.group()
def airflow() -> None:
    """A local Airflow 3 (LocalExecutor, SQLite) with the project's DAGs.

    Its home, metadata and logs are under KAPPA_AIRFLOW_HOME (default
    <KAPPA_STATE_DIR>/airflow, i.e. .kappa/airflow).
    """


@airflow.command()
@click.option(
    "--port", type=int, default=None, help=env_help("UI/API server port", AirflowSettings, "port")
)
@click.option(
    "--exporter/--no-exporter",
    default=True,
    show_default=True,
    help="also start the run-metrics exporter (KAPPA_AIRFLOW_METRICS_PORT)",
)
def up(port: int | None, exporter: bool) -> None:
    """Start the api-server, scheduler and dag-processor; print how to log in."""
    local = _local(port)
    pids = loc.up(local, with_exporter=exporter)
    for name, pid in pids.items():
        click.echo(f"  {name:<16} pid {pid}")
    secret = loc.password(local)
    start = local.start_date()
    click.echo(
        f"Airflow UI: {local.url}  (DAG {loc.DAG_ID}, first interval {start:%Y-%m-%dT%H:%MZ})"
    )
    click.echo(
        f"  user {loc.USER}, password {secret if secret is not None else '(not written yet)'}"
    )
    click.echo(f"  the simple auth manager keeps generated passwords in {local.passwords_file}")
    if exporter and local.settings.metrics_port:
        click.echo(
            f"  run metrics: http://{local.settings.metrics_host}:"
            f"{local.settings.metrics_port}/metrics"
        )
    click.echo(
        "  new DAGs start paused: unpause it in the UI, or "
        f'`eval "$(kappa airflow env)" && airflow dags unpause {loc.DAG_ID}`'
    )
    click.echo(f"  logs: {local.home / 'logs'}; stop with `kappa airflow down`")


@airflow.command()
def down() -> None:
    """Stop the local Airflow (only the processes `up` started)."""
    local = _local()
    for name, pid in loc.down(local).items():
        click.echo(f"  {name:<16} {'stopped pid ' + str(pid) if pid else 'not running'}")


@airflow.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object, for scripts")
def status(as_json: bool) -> None:
    """Which local Airflow processes run, and what the API server's health check says."""
    local = _local()
    doc = loc.status(local)
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    click.echo(f"Airflow home {doc['home']}, UI {doc['url']}")
    for name, pid in doc["processes"].items():
        click.echo(f"  {name:<16} {'running pid ' + str(pid) if pid else 'stopped'}")
    health = doc["health"]
    if health is None:
        click.echo("  API server: not answering")
        return
    for part, value in health.items():
        state = value.get("status") if isinstance(value, dict) else value
        click.echo(f"  {part:<28} {state}")


@airflow.command()
def env() -> None:
    """Print `export` lines that point the `airflow` CLI at the local Airflow.

    Use as: eval "$(kappa airflow env)"; airflow dags list
    """
    local = _local()
    full = local.env(base={})
    for key in sorted(k for k in full if k.startswith(("AIRFLOW", "KAPPA_"))):
        click.echo(f"export {key}={shlex.quote(full[key])}")


@airflow.command()
@click.option(
    "--from",
    "start",
    type=UTC_TIME,
    required=True,
    help="first interval start, on the schedule (00, 06, 12, 18 UTC)",
)
@click.option(
    "--to",
    "end",
    type=UTC_TIME,
    required=True,
    help="end of the last interval (exclusive), on the schedule",
)
@click.option(
    "--reprocess-behavior",
    type=click.Choice(["none", "completed", "failed"]),
    default="completed",
    show_default=True,
    help="rerun intervals that already have a run in this state or better",
)
@click.option(
    "--output", default=None, help="output root URL for these runs (default: KAPPA_REPLAY_OUTPUT)"
)
@click.option("--dry-run", is_flag=True, help="list the runs without creating them")
def backfill(
    start: datetime, end: datetime, reprocess_behavior: str, output: str | None, dry_run: bool
) -> None:
    """Replay [FROM, TO) through the DAG: `airflow backfill create`, one run per interval.

    The scheduler of `kappa airflow up` runs them, one at a time; a rerun replaces
    an interval's output.
    """
    local = _local()
    args = loc.backfill_args(
        start, end, reprocess=reprocess_behavior, output=output, dry_run=dry_run
    )
    click.echo("airflow " + shlex.join(args))
    click.echo("  (the runs start once the DAG is unpaused: airflow dags unpause kappa_replay)")
    done = loc.run_airflow(local, args, capture=False)
    if done.returncode != 0:
        msg = f"airflow backfill create exited with {done.returncode}"
        raise click.ClickException(msg)


@airflow.command("metrics-exporter")
@click.option(
    "--port",
    type=int,
    default=None,
    help=env_help("port to serve /metrics on", AirflowSettings, "metrics_port"),
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help=env_help("folder of *.prom files", AirflowSettings, "metrics_dir"),
)
@click.option("--tag", hidden=True, default=None, help="a marker for the process supervisor")
def metrics_exporter(port: int | None, directory: Path | None, tag: str | None) -> None:
    """Serve the replay DAG's run metrics (the *.prom files of its runs) to Prometheus."""
    del tag
    settings = AirflowSettings()
    folder = (directory or settings.metrics_path(StackSettings().state_dir)).resolve()
    port = port if port is not None else settings.metrics_port
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TextfileCollector(folder))
    server, thread = start_http_server(port, addr=settings.metrics_host, registry=registry)
    click.echo(f"serving {folder}/*.prom on http://{settings.metrics_host}:{port}/metrics")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        thread.join(timeout=5)
