"""Prometheus configuration: one template for the local stack, compose and the tests.

``monitoring/prometheus/prometheus.local.yml`` and ``prometheus.compose.yml`` are this
template rendered with the default ports (a test keeps them in sync); ``kappa stack up
--with-monitoring`` and the end-to-end test render it with the ports actually in use::

    python -m monitoring.prometheus_config local   > monitoring/prometheus/prometheus.local.yml
    python -m monitoring.prometheus_config compose > monitoring/prometheus/prometheus.compose.yml
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS_DIR = Path(__file__).resolve().parent / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
LOCAL_FILE = PROMETHEUS_DIR / "prometheus.local.yml"
COMPOSE_FILE = PROMETHEUS_DIR / "prometheus.compose.yml"

#: Scrape jobs, named after the processes (and the compose services) they scrape.
PRODUCER, VALIDATOR, AGGREGATOR, REPLAY, AIRFLOW = (
    "producer",
    "validator",
    "aggregator",
    "replay",
    "airflow",
)
JOBS = (PRODUCER, VALIDATOR, AGGREGATOR, REPLAY, AIRFLOW)

#: Default metric ports (the settings' defaults): producer, validator, aggregation,
#: replay (while a replay runs) and `kappa airflow metrics-exporter` (the DAG's run metrics).
DEFAULT_PORTS = {PRODUCER: 9101, VALIDATOR: 9102, AGGREGATOR: 9103, REPLAY: 9104, AIRFLOW: 9107}

#: Compose service serving each job's metrics (compose/docker-compose.yml).
COMPOSE_SERVICES = {
    PRODUCER: "producer",
    VALIDATOR: "validator",
    AGGREGATOR: "aggregator",
    REPLAY: "airflow-scheduler",
    AIRFLOW: "airflow-scheduler",
}

HEADER = (
    "# Rendered by monitoring/prometheus_config.py ({kind}); edit the template, not this file.\n"
)


def render(
    targets: Mapping[str, Sequence[str]],
    *,
    kind: str,
    scrape_interval: str = "15s",
    evaluation_interval: str | None = None,
    rule_files: Sequence[str] = ("rules/*.yml",),
) -> str:
    """A Prometheus config scraping ``targets`` (job -> host:port list), as YAML text.

    Relative ``rule_files`` are resolved by Prometheus against the config file's folder.
    """
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval or scrape_interval,
            "external_labels": {"pipeline": "telecom-kappa", "deployment": kind},
        },
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": list(hosts)}],
            }
            for job, hosts in targets.items()
        ],
    }
    body: str = yaml.safe_dump(config, sort_keys=False)
    return HEADER.format(kind=kind) + body


def local_targets(
    ports: Mapping[str, int] | None = None, host: str = "127.0.0.1"
) -> dict[str, list[str]]:
    """Jobs of the local stack: every process on ``host``, at ``ports`` (default ports)."""
    merged = {**DEFAULT_PORTS, **(ports or {})}
    return {job: [f"{host}:{merged[job]}"] for job in JOBS if merged.get(job)}


def compose_targets() -> dict[str, list[str]]:
    """Jobs of the compose deployment: the services by name, at the default ports."""
    return {job: [f"{COMPOSE_SERVICES[job]}:{DEFAULT_PORTS[job]}"] for job in JOBS}


def ports_from_settings() -> dict[str, int]:
    """The metric ports the settings (``KAPPA_*_METRICS_PORT``) give; 0 leaves a job out."""
    from kappa import settings as s

    return {
        PRODUCER: s.ProducerSettings().metrics_port,
        VALIDATOR: s.ValidatorSettings().metrics_port,
        AGGREGATOR: s.AggregateSettings().metrics_port,
        REPLAY: s.ReplaySettings().metrics_port,
        AIRFLOW: s.AirflowSettings().metrics_port,
    }


def write_local_config(
    path: Path, ports: Mapping[str, int] | None = None, *, scrape_interval: str = "15s"
) -> Path:
    """Write a local config at ``path`` (e.g. under the state dir) with absolute rule paths."""
    text = render(
        local_targets(ports),
        kind="local",
        scrape_interval=scrape_interval,
        rule_files=[str(RULES_DIR / "*.yml")],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def default_text(kind: str) -> str:
    """The committed file of ``kind`` ("local" or "compose")."""
    if kind == "local":
        return render(local_targets(), kind="local")
    if kind == "compose":
        return render(compose_targets(), kind="compose")
    msg = f"kind must be local or compose, got {kind!r}"
    raise ValueError(msg)


if __name__ == "__main__":
    sys.stdout.write(default_text(sys.argv[1] if len(sys.argv) > 1 else "local"))
