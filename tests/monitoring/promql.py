"""What the monitoring tests need to know about PromQL and the exported metric names."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

import monitoring.metrics  # noqa: F401 -- registers the metric constants
from monitoring import dashboards

#: Series Prometheus writes itself for every target.
SCRAPE_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")

#: What Grafana substitutes for its built-in variables, for a 1-second scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "5m"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels left out)."""
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _GROUPING.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        name = m.group()
        before = s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # 5m, 1e3, 0.95
            continue
        if s[m.end() :].lstrip().startswith("("):  # a function or aggregation
            continue
        if name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def sample_names(family: Metric) -> set[str]:
    """The series names a metric family exposes (counter ``_total``, histogram ``_bucket``...)."""
    base = family.name
    by_type = {
        "counter": {f"{base}_total", f"{base}_created"},
        "histogram": {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"},
        "gaugehistogram": {f"{base}_bucket", f"{base}_gsum", f"{base}_gcount"},
        "summary": {base, f"{base}_sum", f"{base}_count", f"{base}_created"},
        "info": {f"{base}_info"},
    }
    return by_type.get(family.type, {base}) | {s.name for s in family.samples}


def exported_names(scratch: Path) -> set[str]:
    """Every metric name the project's processes export.

    The constants of ``monitoring.metrics`` (and the client's process collectors) from the
    default registry, plus the replay DAG's text-file metrics, which its ``metrics`` task
    writes (here into ``scratch``) and ``kappa airflow metrics-exporter`` serves.
    """
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= sample_names(family)
    for family in replay_dag_families(scratch):
        names |= sample_names(family)
    return names | SCRAPE_SERIES


def replay_dag_families(folder: Path) -> list[Metric]:
    """The families of the replay DAG's metrics file after one success and one failure."""
    if importlib.util.find_spec("orchestration.runmetrics") is None:
        return []
    runmetrics: Any = importlib.import_module("orchestration.runmetrics")
    figures = runmetrics.RunFigures(
        start=datetime(2026, 1, 1, tzinfo=UTC),
        end=datetime(2026, 1, 1, 6, tzinfo=UTC),
        records=1,
        customers=1,
        towers=1,
        revenue=1.0,
        replay_seconds=1.0,
    )
    runmetrics.record_success(folder, figures)
    path = runmetrics.record_failure(folder, "replay")
    return list(text_string_to_metric_families(path.read_text(encoding="utf-8")))


def dashboard_queries(directory: Path = dashboards.DASHBOARD_DIR) -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every panel target of every dashboard JSON."""
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield path.name, panel.get("title", ""), target["expr"]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def instantiate(expr: str) -> str:
    """``expr`` with Grafana's built-in variables replaced, ready for Prometheus's API."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr
