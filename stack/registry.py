"""Apicurio Registry, serving the Confluent Schema Registry API under /apis/ccompat/v7."""

from __future__ import annotations

from pathlib import Path

from kappa.settings import RegistrySettings, StackSettings
from stack import cds
from stack.exceptions import JavaNotFoundError
from stack.java import Jdk, find_java
from stack.layout import Layout, render
from stack.net import LOOPBACK, http_ok
from stack.process import ServiceSpec, jvm_marker

CCOMPAT_PATH = "/apis/ccompat/v7"
JAVA_MIN = 21  # Apicurio Registry 3.3 is built for Java 21


class RegistryService:
    name = "registry"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.layout = Layout.of(settings)

    @property
    def port(self) -> int:
        return self.settings.registry_port

    @property
    def ports(self) -> dict[str, int]:
        return {"schema registry": self.settings.registry_port}

    @property
    def home(self) -> Path:
        return self.layout.home("registry")

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{CCOMPAT_PATH}"

    def client_settings(self) -> RegistrySettings:
        return RegistrySettings(url=self.url())

    def _jdk(self) -> Jdk:
        home = self.settings.registry_java_home
        if home is None and self.settings.java_home is not None:
            try:
                return find_java(JAVA_MIN, self.settings.java_home)
            except JavaNotFoundError:
                pass
        try:
            return find_java(JAVA_MIN, home, search=True)
        except JavaNotFoundError as exc:
            msg = (
                f"the Schema Registry needs Java {JAVA_MIN}+ ({exc}); set KAPPA_REGISTRY_JAVA_HOME"
            )
            raise JavaNotFoundError(msg) from exc

    def _runner(self) -> Path:
        return self.layout.require("registry", "quarkus-run.jar") / "quarkus-run.jar"

    def check(self) -> None:
        self._runner()
        self._jdk()

    def prepare(self) -> None:
        # Quarkus reads ./config/application.properties above the packaged one.
        render(
            "registry/application.properties",
            self.home / "config" / "application.properties",
            registry_port=self.port,
            db_path=self.home / "db",
        )

    def spec(self) -> ServiceSpec:
        marker = jvm_marker(self.name, self.layout.state_dir)
        jdk = self._jdk()
        archive = cds.plan(jdk, self.layout.jvm("registry"), self.name)
        argv = [
            str(jdk.java),
            *archive.args,
            f"-Xmx{self.settings.registry_heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
            marker,
            "-jar",
            str(self._runner()),
        ]
        return ServiceSpec(name=self.name, argv=argv, marker=marker, cwd=self.home, cds=archive)

    def healthy(self) -> bool:
        return http_ok(f"{self.url()}/subjects")
