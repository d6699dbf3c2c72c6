"""Recipe (d) of docs/ARCHITECTURE.md, a new metric, followed in process.

A counter defined as ``monitoring/metrics.py`` defines its constants (in the default
registry) is checked against the project's metric conventions: the naming and label
checks below, which every metric of ``monitoring.metrics`` passes, and the checks of
``tests/monitoring``: an owning scrape job for its prefix (``owner``), served by the one
process whose ``metrics.serve(..., prefixes=...)`` names that prefix, and a dashboard panel
naming it passing the "every dashboard metric is exported" check (``exported_names``,
``metric_names``, ``dashboard_queries``). The counter is unregistered afterwards.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, Counter, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from monitoring import dashboards, metrics
from monitoring import prometheus_config as pc
from tests.monitoring.promql import dashboard_queries, exported_names, metric_names
from tests.monitoring.test_end_to_end import owner

REPO = Path(__file__).resolve().parents[2]
NAME = "kappa_validator_docs_recipe_records_total"

_NAME = re.compile(r"kappa_[a-z][a-z0-9]*(_[a-z0-9]+)+")
_NOT_BASE_UNITS = ("_ms", "_milliseconds", "_minutes", "_hours", "_kb", "_mb", "_percent")
HIGH_CARDINALITY = frozenset(
    {"call_id", "caller_num", "callee_num", "caller", "callee", "tower_id", "tower", "key"}
)
"""Label names that would make a series per call, subscriber or tower."""


def problems(metric: MetricWrapperBase) -> list[str]:
    """How ``metric`` departs from the conventions of ``monitoring.metrics`` (empty: none)."""
    name: str = metric._name  # a counter's without "_total", which the client adds
    found = []
    if not _NAME.fullmatch(name):
        found.append(f"{name}: not kappa_<component>_<what> in lower snake case")
    if name.endswith(_NOT_BASE_UNITS):
        found.append(f"{name}: not in base units (seconds, bytes, records)")
    if not metric._documentation.strip():
        found.append(f"{name}: no help text")
    wide = set(metric._labelnames) & HIGH_CARDINALITY
    if wide:
        found.append(f"{name}: high-cardinality labels {sorted(wide)}")
    return found


def served_prefixes() -> set[str]:
    """The metric prefixes the ``kappa`` commands serve: ``metrics.serve(..., prefixes=(...))``
    in ``cli/``."""
    out: set[str] = set()
    for path in sorted((REPO / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "serve":
                for kw in node.keywords:
                    if kw.arg == "prefixes":
                        out |= set(ast.literal_eval(kw.value))
    return out


def project_metrics() -> list[MetricWrapperBase]:
    return [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


@pytest.fixture
def define() -> Iterator[Callable[[], Counter]]:
    """Defines the recipe's counter in the default registry (as a constant of
    ``monitoring.metrics`` is) when called; unregisters it after the test."""
    made: list[Counter] = []

    def make() -> Counter:
        counter = Counter(
            NAME,
            "Records the docs' recipe judged, by failed rule (an example of recipe (d))",
            ["rule"],
        )
        made.append(counter)
        return counter

    yield make
    for counter in made:
        REGISTRY.unregister(counter)
    assert REGISTRY.get_sample_value(NAME, {"rule": "phone_format"}) is None


def test_the_project_metrics_follow_the_conventions() -> None:
    found = [p for m in project_metrics() for p in problems(m)]
    assert project_metrics()
    assert not found


def test_the_conventions_catch_a_metric_off_them() -> None:
    for bad in (
        Counter("validator_records", "no prefix", registry=None),
        Counter("kappa_validator_latency_ms", "milliseconds", registry=None),
        Counter("kappa_validator_calls", "per call", ["call_id"], registry=None),
        Counter("kappa_validator_quiet", " ", registry=None),
    ):
        assert problems(bad), bad._name


def test_a_new_metric_defined_as_the_recipe_says(
    define: Callable[[], Counter], tmp_path: Path
) -> None:
    board = dashboards.Dashboard(
        "docs-recipe",
        "docs recipe",
        "",
        (
            dashboards.row(
                "Validator",
                dashboards.ts(
                    "Recipe records by rule",
                    dashboards.q(f"sum by (rule) (rate({NAME}[{dashboards.RATE}]))", "{{rule}}"),
                ),
            ),
        ),
    )
    dashboards.write(tmp_path / "boards", [board])
    named = {n for _, _, e in dashboard_queries(tmp_path / "boards") for n in metric_names(e)}
    assert named == {NAME}
    assert named - exported_names(tmp_path / "before") == {NAME}  # not defined yet

    counter = define()
    counter.labels("phone_format").inc()

    # The project's conventions.
    assert problems(counter) == []
    assert owner(NAME) == pc.VALIDATOR
    prefix = next(p for p in served_prefixes() if NAME.startswith(p))
    assert prefix == "kappa_validator_"
    # Served by the validator's process only (``serve`` filters by prefix).
    validator = generate_latest(metrics._OwnMetrics((prefix,))).decode()
    assert f'{NAME}{{rule="phone_format"}} 1.0' in validator.splitlines()
    producer = generate_latest(metrics._OwnMetrics(("kappa_producer_",))).decode()
    assert NAME not in producer
    # The dashboard check of tests/monitoring passes now that the metric exists.
    assert named <= exported_names(tmp_path / "after")
