"""The Grafana dashboards: in sync with their builder, well-formed, naming only exported metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from monitoring import dashboards
from tests.monitoring.promql import dashboard_queries, exported_names, metric_names
from tests.monitoring.test_end_to_end import MOVING, owner


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    return exported_names(tmp_path_factory.mktemp("runmetrics"))


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (rule) (rate(kappa_x_total{rule="a b",job=~"v.*"}[5m]))', {"kappa_x_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(a_bucket[$__rate_interval])))", {"a_bucket"}),
        (
            "(sum(rate(a_total[1m])) - sum(rate(b_total[1m]))) / on() group_left c > 0.05",
            {"a_total", "b_total", "c"},
        ),
        ("max(x offset 5m) and ignoring(instance) y unless z * 1e3", {"x", "y", "z"}),
        ("time() - max(t_seconds)", {"t_seconds"}),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_dashboard_files_are_the_builders_output() -> None:
    files = {p.name for p in dashboards.DASHBOARD_DIR.glob("*.json")}
    assert files == {dashboards.file_name(b) for b in dashboards.DASHBOARDS}
    for board in dashboards.DASHBOARDS:
        on_disk = (dashboards.DASHBOARD_DIR / dashboards.file_name(board)).read_text("utf-8")
        assert on_disk == dashboards.text(board), (
            f"{dashboards.file_name(board)} is stale: run `python -m monitoring.dashboards`"
        )


def test_dashboards_are_well_formed() -> None:
    uids = set()
    for path in sorted(dashboards.DASHBOARD_DIR.glob("*.json")):
        board = json.loads(path.read_text("utf-8"))
        assert board["uid"] not in uids
        uids.add(board["uid"])
        assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0, (path.name, panel["title"])
            assert pos["x"] + pos["w"] <= 24, (path.name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], (path.name, panel["title"])
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs))


def test_the_dashboards_cover_the_issue() -> None:
    exprs = " ".join(e for _, _, e in dashboard_queries())
    for needle in (
        "kappa_producer_records_total",
        "kappa_validator_consumer_lag_records",
        "kappa_validator_records_dead_lettered_total",
        "kappa_business_window_revenue",
        "kappa_business_window_active_callers",
        "kappa_business_window_low_signal_towers",
        "kappa_business_window_emit_delay_seconds",
    ):
        assert needle in exprs


def test_every_dashboard_metric_is_exported(exported: set[str]) -> None:
    unknown = {
        (file, title, name)
        for file, title, expr in dashboard_queries()
        for name in metric_names(expr)
        if name not in exported
    }
    assert not unknown, "dashboard panels name metrics no process exports:\n" + "\n".join(
        f"  {f} / {t}: {n}" for f, t, n in sorted(unknown)
    )


def test_an_unknown_metric_is_caught(tmp_path: Path, exported: set[str]) -> None:
    board = dashboards.Dashboard(
        "x",
        "x",
        "",
        (
            dashboards.Row(
                "r",
                (
                    dashboards.Panel(
                        "typo", (dashboards.q("sum(rate(kappa_validator_record_in_total[5m]))"),)
                    ),
                ),
            ),
        ),
    )
    dashboards.write(tmp_path, [board])
    names = {n for _, _, e in dashboard_queries(tmp_path) for n in metric_names(e)}
    assert names - exported == {"kappa_validator_record_in_total"}


PROVISIONING = dashboards.DASHBOARD_DIR.parent / "provisioning"
COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "kappa.yml").read_text("utf-8"))[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"  # the compose service
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "kappa.yml").read_text("utf-8"))[
        "providers"
    ]
    assert provider["type"] == "file"
    if not COMPOSE.exists():
        return
    grafana = yaml.safe_load(COMPOSE.read_text("utf-8"))["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["../monitoring/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["../monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert "prometheus" in yaml.safe_load(COMPOSE.read_text("utf-8"))["services"]


def test_the_end_to_end_liveness_metrics_are_exported(exported: set[str]) -> None:
    assert set(MOVING) <= exported
    assert all(owner(name) for name in MOVING)
