"""Prometheus config and alert rules: promtool checks them, the rule unit tests pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import prometheus_config as pc
from tests.monitoring.promql import exported_names, metric_names

RULE_FILES = sorted(pc.RULES_DIR.glob("*.yml"))
RULE_TESTS = sorted((pc.PROMETHEUS_DIR / "tests").glob("*.yml"))
COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make install` (Debian package prometheus)")
    return path


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("path", [pc.LOCAL_FILE, pc.COMPOSE_FILE], ids=lambda p: p.name)
def test_promtool_checks_the_config(promtool: str, path: Path) -> None:
    done = _run([promtool, "check", "config", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in done.stdout + done.stderr


def test_promtool_checks_a_rendered_config(promtool: str, tmp_path: Path) -> None:
    path = pc.write_local_config(
        tmp_path / "prometheus.yml", {pc.PRODUCER: 19101, pc.REPLAY: 0}, scrape_interval="1s"
    )
    done = _run([promtool, "check", "config", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(path.read_text("utf-8"))
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs[pc.PRODUCER] == ["127.0.0.1:19101"]
    assert pc.REPLAY not in jobs
    assert config["global"]["scrape_interval"] == "1s"


def test_promtool_checks_the_rules(promtool: str) -> None:
    done = _run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS
    done = _run([promtool, "test", "rules", *map(str, RULE_TESTS)])
    assert done.returncode == 0, done.stdout + done.stderr


def _alerts() -> list[dict[str, str]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text("utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text("utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert {a["alert"] for a in _alerts()} <= fired


def test_the_issue_alerts_exist() -> None:
    names = {a["alert"] for a in _alerts()}
    assert {
        "KappaDeadLetterShareHigh",
        "KappaConsumerLagGrowing",
        "KappaStreamStalled",
        "KappaWatermarkDelayHigh",
        "KappaReplayIntervalOverdue",
    } <= names


def test_alerts_name_only_exported_metrics(tmp_path: Path) -> None:
    exported = exported_names(tmp_path)
    unknown = {
        (a["alert"], n) for a in _alerts() for n in metric_names(a["expr"]) if n not in exported
    }
    assert not unknown


@pytest.mark.parametrize("kind", ["local", "compose"])
def test_committed_configs_are_the_template_rendered(kind: str) -> None:
    path = pc.LOCAL_FILE if kind == "local" else pc.COMPOSE_FILE
    assert path.read_text("utf-8") == pc.default_text(kind), (
        f"{path.name} is stale: python -m monitoring.prometheus_config {kind} > {path}"
    )


def test_local_ports_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PRODUCER", "VALIDATOR", "AGGREGATE", "REPLAY", "AIRFLOW"):
        monkeypatch.delenv(f"KAPPA_{name}_METRICS_PORT", raising=False)
    assert pc.ports_from_settings() == pc.DEFAULT_PORTS


def test_compose_targets_are_compose_services() -> None:
    if not COMPOSE.exists():
        pytest.skip("compose/docker-compose.yml is not there yet")
    services = set(yaml.safe_load(COMPOSE.read_text("utf-8"))["services"])
    hosts = {t.split(":")[0] for ts in pc.compose_targets().values() for t in ts}
    assert hosts <= services, f"not compose services: {sorted(hosts - services)}"
