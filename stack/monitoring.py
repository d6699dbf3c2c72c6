"""Prometheus from Debian's ``prometheus`` package, with the repo's local config."""

from __future__ import annotations

import shutil
from pathlib import Path

from kappa.settings import StackSettings
from stack.exceptions import MonitoringUnavailableError
from stack.layout import Layout, repo_root
from stack.net import LOOPBACK, http_ok
from stack.process import ServiceSpec

CONFIG = Path("monitoring") / "prometheus" / "prometheus.local.yml"


class PrometheusService:
    name = "prometheus"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.layout = Layout.of(settings)

    @property
    def port(self) -> int:
        return self.settings.prometheus_port

    @property
    def ports(self) -> dict[str, int]:
        return {"Prometheus": self.settings.prometheus_port}

    @property
    def config(self) -> Path:
        return repo_root() / CONFIG

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _binary(self) -> str:
        binary = shutil.which("prometheus")
        if binary is None:
            msg = "Prometheus is not installed: apt-get install prometheus"
            raise MonitoringUnavailableError(msg)
        return binary

    def check(self) -> None:
        self._binary()
        if not self.config.is_file():
            msg = (
                f"the Prometheus config {CONFIG} is not in this checkout yet; "
                "start without --with-monitoring"
            )
            raise MonitoringUnavailableError(msg)

    def prepare(self) -> None:
        self.layout.home("prometheus")

    def spec(self) -> ServiceSpec:
        data = self.layout.home("prometheus") / "data"
        marker = f"--storage.tsdb.path={data}"
        argv = [
            self._binary(),
            f"--config.file={self.config}",
            marker,
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--storage.tsdb.retention.time=7d",
        ]
        return ServiceSpec(
            name=self.name, argv=argv, marker=marker, cwd=self.layout.home("prometheus")
        )

    def healthy(self) -> bool:
        return http_ok(f"{self.url()}/-/ready")
