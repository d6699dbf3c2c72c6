"""A Spark standalone master and its workers, from the pyspark distribution in the venv.

Each daemon is the JVM ``bin/spark-class`` would run: the command comes from
Spark's own launcher (``org.apache.spark.launcher.Main``, which is what
``spark-class`` asks), and the supervisor starts that JVM directly, so its
command line carries the stack's marker from the first instant. Workers keep
their work dirs, shuffle files and executor logs under
``<cluster state>/spark/worker-<n>/``; executors run the venv's Python.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kappa.settings import ClusterSettings, StackSettings
from stack.exceptions import ArtifactsMissingError, ServiceStartError
from stack.java import Jdk, find_java
from stack.layout import INSTALL_HINT, Layout
from stack.net import LOOPBACK, http_json
from stack.process import ServiceSpec, jvm_marker

log = logging.getLogger(__name__)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
LAUNCHER_CLASS = "org.apache.spark.launcher.Main"
JAVA_MIN = 17
SCALA_VERSION = "2.13"
# A worker that vanishes (kill -9) is dropped at once on the disconnect; one that
# hangs is declared lost after this many seconds (Spark's default: 60).
WORKER_TIMEOUT_S = 20


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark package."""
    try:
        import pyspark
    except ImportError as exc:  # pragma: no cover (pyspark is a dependency)
        msg = f"pyspark is not installed: {INSTALL_HINT}"
        raise ArtifactsMissingError(msg) from exc
    home = Path(pyspark.__file__).resolve().parent
    if not (home / "jars").is_dir():
        msg = f"pyspark at {home} has no jars/ folder: {INSTALL_HINT}"
        raise ArtifactsMissingError(msg)
    return home


def java_home(jdk: Jdk) -> Path:
    """JAVA_HOME of a ``java`` executable (``/usr/bin/java`` is a symlink chain)."""
    return jdk.java.resolve().parent.parent


class _SparkDaemon:
    """What the master and the workers share: the launcher, JAVA_HOME, the environment."""

    name = ""
    main_class = ""

    def __init__(self, settings: StackSettings, cluster: ClusterSettings) -> None:
        self.settings = settings
        self.cluster = cluster
        self.layout = Layout.of(settings)

    @property
    def spark_dir(self) -> Path:
        return self.layout.home("spark")

    @property
    def home(self) -> Path:
        return self.spark_dir / self.name

    def _jdk(self) -> Jdk:
        return find_java(JAVA_MIN, self.settings.java_home)

    def check(self) -> None:
        spark_home()
        self._jdk()

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    def master_url(self) -> str:
        return f"spark://{LOOPBACK}:{self.cluster.spark_master_port}"

    def master_web_url(self) -> str:
        return f"http://{LOOPBACK}:{self.cluster.spark_master_web_port}"

    def _daemon_opts(self) -> list[str]:
        return [
            jvm_marker(self.name, self.layout.state_dir),
            f"-Dspark.worker.timeout={WORKER_TIMEOUT_S}",
            "-Djava.net.preferIPv4Stack=true",
            "-Duser.timezone=UTC",
        ]

    def _env(self) -> dict[str, str]:
        jdk = self._jdk()
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_SCALA_VERSION": SCALA_VERSION,
            "JAVA_HOME": str(java_home(jdk)),
            "SPARK_DAEMON_MEMORY": self.cluster.spark_daemon_memory,
            "SPARK_DAEMON_JAVA_OPTS": " ".join(self._daemon_opts()),
            "SPARK_LOCAL_IP": LOOPBACK,
            "SPARK_LOG_DIR": str(self.layout.state_dir / "logs" / "spark"),
            "SPARK_PID_DIR": str(self.layout.state_dir / "run"),
            "SPARK_CONF_DIR": str(self.spark_dir / "conf"),
            "PYSPARK_PYTHON": sys.executable,
        }
        env.pop("SPARK_MASTER_OPTS", None)
        env.pop("SPARK_WORKER_OPTS", None)
        return env

    def _args(self) -> list[str]:
        raise NotImplementedError

    def _command(self, env: dict[str, str]) -> list[str]:
        """The JVM command line ``spark-class <main class> <args>`` would exec."""
        home = spark_home()
        argv = [
            str(self._jdk().java),
            "-Xmx128m",
            "-cp",
            f"{home / 'jars'}/*",
            LAUNCHER_CLASS,
            self.main_class,
            *self._args(),
        ]
        out = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
        # messages, a NUL and a newline, then the command NUL-separated (as spark-class reads it)
        _, _, raw = out.stdout.partition(b"\0\n")
        command = [part.decode() for part in raw.split(b"\0") if part]
        if out.returncode != 0 or not command:
            detail = out.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            msg = f"Spark's launcher could not build the {self.name} command: {detail[0]}"
            raise ServiceStartError(msg)
        return command

    def spec(self) -> ServiceSpec:
        (self.spark_dir / "conf").mkdir(parents=True, exist_ok=True)
        (self.layout.state_dir / "logs" / "spark").mkdir(parents=True, exist_ok=True)
        env = self._env()
        return ServiceSpec(
            name=self.name,
            argv=self._command(env),
            marker=jvm_marker(self.name, self.layout.state_dir),
            cwd=self.home,
            env=env,
        )

    def master_state(self) -> dict[str, Any] | None:
        """The master's ``/json/`` view (workers, applications), or None."""
        body = http_json(f"{self.master_web_url()}/json/")
        return body if isinstance(body, dict) else None


class SparkMasterService(_SparkDaemon):
    name = "spark-master"
    main_class = MASTER_CLASS

    @property
    def port(self) -> int:
        return self.cluster.spark_master_port

    @property
    def ports(self) -> dict[str, int]:
        return {
            "Spark master": self.cluster.spark_master_port,
            "Spark master web": self.cluster.spark_master_web_port,
        }

    def url(self) -> str:
        return self.master_url()

    def _args(self) -> list[str]:
        return [
            "--host",
            LOOPBACK,
            "--port",
            str(self.cluster.spark_master_port),
            "--webui-port",
            str(self.cluster.spark_master_web_port),
        ]

    def healthy(self) -> bool:
        state = self.master_state()
        return state is not None and state.get("status") == "ALIVE"


class SparkWorkerService(_SparkDaemon):
    """Worker ``index`` (1, 2): ``--cores`` and ``--memory`` from ClusterSettings."""

    main_class = WORKER_CLASS

    def __init__(self, settings: StackSettings, cluster: ClusterSettings, index: int) -> None:
        super().__init__(settings, cluster)
        self.index = index
        self.name = f"spark-worker-{index}"

    @property
    def port(self) -> int:
        return self.cluster.spark_worker_ports[self.index - 1]

    @property
    def web_port(self) -> int:
        return self.cluster.spark_worker_web_ports[self.index - 1]

    @property
    def ports(self) -> dict[str, int]:
        return {self.name: self.port, f"{self.name} web": self.web_port}

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}"

    def _env(self) -> dict[str, str]:
        work, local = self.home / "work", self.home / "local"
        work.mkdir(parents=True, exist_ok=True)
        local.mkdir(parents=True, exist_ok=True)
        return {**super()._env(), "SPARK_WORKER_DIR": str(work), "SPARK_LOCAL_DIRS": str(local)}

    def _args(self) -> list[str]:
        return [
            self.master_url(),
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--webui-port",
            str(self.web_port),
            "--cores",
            str(self.cluster.worker_cores),
            "--memory",
            self.cluster.worker_memory,
            "--work-dir",
            str(self.home / "work"),
        ]

    def healthy(self) -> bool:
        """Registered with the master, which counts it alive."""
        state = self.master_state()
        if state is None:
            return False
        workers = state.get("workers") or []
        return any(
            isinstance(w, dict)
            and w.get("state") == "ALIVE"
            and w.get("host") == LOOPBACK
            and int(w.get("port", -1)) == self.port
            for w in workers
        )
