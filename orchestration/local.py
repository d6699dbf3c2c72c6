"""A local Airflow 3 for the replay DAG: api-server, scheduler and dag-processor.

Everything lives under ``KAPPA_AIRFLOW_HOME`` (default ``<KAPPA_STATE_DIR>/airflow``): the
generated ``airflow.cfg`` (its secrets), the SQLite metadata database, logs, pid
files, the simple auth manager's generated passwords and the run metrics. The
DAGs folder is this project's ``orchestration/dags``. Processes are started in
their own sessions by ``stack.process.Supervisor`` and stopped by their pid
files only.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kappa.settings import AirflowSettings, StackSettings
from orchestration.exceptions import AirflowNotInstalledError, AirflowStartError, NotOnScheduleError
from orchestration.intervals import INTERVAL, floor_interval, on_schedule
from stack.net import http_get, port_in_use
from stack.process import ServiceSpec, Supervisor, alive

log = logging.getLogger(__name__)

COMPONENTS = ("api-server", "scheduler", "dag-processor")
# The scheduler would also serve task logs on 8793 on every interface; with a local
# executor the API server reads the log files directly.
_ARGS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}
EXPORTER = "metrics-exporter"
DAG_ID = "kappa_replay"
USER = "admin"
__all__ = ["INTERVAL", "LocalAirflow", "floor_interval", "on_schedule"]


def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def dags_folder() -> Path:
    return project_root() / "orchestration" / "dags"


@dataclass(frozen=True)
class LocalAirflow:
    """Paths and environment of one local Airflow."""

    settings: AirflowSettings
    stack: StackSettings

    @property
    def home(self) -> Path:
        return self.settings.home_path(self.stack.state_dir).resolve()

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    @property
    def supervisor(self) -> Supervisor:
        # The API server renames itself (setproctitle): its marker is then its title.
        title = f"airflow api_server -- host:{self.settings.host} port:{self.settings.port}"
        return _Supervisor(self.home, {"api-server": title})

    def start_date(self) -> datetime:
        """The DAG's start: the setting, else pinned (in the home) at the first ``up``.

        Pinned, it is the start of the interval under way: the first scheduled run
        replays that interval once it has closed; older ones are a backfill.
        """
        if self.settings.start_date is not None:
            return self.settings.start_date.astimezone(UTC)
        pinned = self.home / "start_date"
        if pinned.exists():
            return datetime.fromisoformat(pinned.read_text().strip())
        start = floor_interval(datetime.now(UTC))
        self.home.mkdir(parents=True, exist_ok=True)
        pinned.write_text(start.isoformat() + "\n")
        return start

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every Airflow process (and of ``airflow`` commands)."""
        env = dict(os.environ if base is None else base)
        db = (
            self.settings.database_url.get_secret_value()
            if self.settings.database_url
            else f"sqlite:///{self.home / 'airflow.db'}"
        )
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": self.settings.executor,
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
                "AIRFLOW__API__HOST": self.settings.host,
                "AIRFLOW__API__PORT": str(self.settings.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                # What the tasks read: absolute paths, since they run in other processes.
                "KAPPA_STATE_DIR": str(self.stack.state_dir.resolve()),
                "KAPPA_AIRFLOW_HOME": str(self.home),
                "KAPPA_AIRFLOW_START_DATE": self.start_date().isoformat(),
                "KAPPA_AIRFLOW_METRICS_DIR": str(
                    self.settings.metrics_path(self.stack.state_dir).resolve()
                ),
            }
        )
        if self.settings.spark_master:
            env["KAPPA_REPLAY_MASTER"] = self.settings.spark_master
        env.setdefault("KAPPA_REPLAY_PROGRESS", "false")  # task logs are files, not terminals
        python_bin = str(Path(sys.executable).parent)
        env["PATH"] = python_bin + os.pathsep + env.get("PATH", "")
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        return env

    def marker(self, name: str) -> str:
        return f"--kappa-service={name}@{self.home}"

    def spec(self, name: str, argv: list[str]) -> ServiceSpec:
        marker = self.marker(name)
        return ServiceSpec(
            name=name,
            argv=[sys.executable, "-m", "orchestration.launch", marker, *argv],
            marker=marker,
            cwd=project_root(),
            env=self.env(),
        )


class _Supervisor(Supervisor):
    """A supervisor that also recognises a process by the title it gave itself."""

    def __init__(self, state_dir: Path, titles: Mapping[str, str]) -> None:
        super().__init__(state_dir)
        self.titles = dict(titles)

    def pid(self, name: str) -> int | None:
        path = self.pid_file(name)
        try:
            record = json.loads(path.read_text())
            pid, marker = int(record["pid"]), str(record["marker"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            cmdline = ""
        markers = [marker] + ([self.titles[name]] if name in self.titles else [])
        if any(m in cmdline for m in markers) and alive(pid):
            return pid
        path.unlink(missing_ok=True)
        return None


def airflow_bin() -> Path:
    path = Path(sys.executable).parent / "airflow"
    if not path.exists():
        msg = f"airflow is not installed in this environment ({path}); run `make install`"
        raise AirflowNotInstalledError(msg)
    return path


def run_airflow(
    local: LocalAirflow, args: list[str], *, capture: bool = True, timeout_s: float = 600.0
) -> subprocess.CompletedProcess[str]:
    """Run an ``airflow`` command against the local Airflow."""
    local.home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(airflow_bin()), *args],
        env=local.env(),
        cwd=project_root(),
        text=True,
        capture_output=capture,
        timeout=timeout_s,
        check=False,
    )


def migrate(local: LocalAirflow) -> None:
    """``airflow db migrate`` (idempotent; the first one also writes airflow.cfg)."""
    done = run_airflow(local, ["db", "migrate"])
    if done.returncode != 0:
        tail = "\n  ".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        msg = f"airflow db migrate failed:\n  {tail}"
        raise AirflowStartError(msg)


def healthy(local: LocalAirflow) -> dict[str, Any] | None:
    """The API server's health document, or None when it does not answer."""
    got = http_get(f"{local.url}/api/v2/monitor/health")
    if got is None or got[0] != 200:
        return None
    try:
        doc: dict[str, Any] = json.loads(got[1])
    except ValueError:
        return None
    return doc


def up(local: LocalAirflow, *, with_exporter: bool = True) -> dict[str, int]:
    """Start what is not running yet; returns the pids. Idempotent."""
    sup = local.supervisor
    local.home.mkdir(parents=True, exist_ok=True)
    ignore = local.home / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    if sup.pid("api-server") is None and port_in_use(local.settings.port, local.settings.host):
        msg = (
            f"port {local.settings.port} is taken by another process; "
            "set KAPPA_AIRFLOW_PORT to a free one"
        )
        raise AirflowStartError(msg)
    migrate(local)
    pids: dict[str, int] = {}
    for name in COMPONENTS:
        pid = sup.pid(name)
        pids[name] = pid if pid is not None else sup.start(local.spec(name, _ARGS[name]))
    if with_exporter and local.settings.metrics_port:
        pid = sup.pid(EXPORTER)
        pids[EXPORTER] = (
            pid
            if pid is not None
            else sup.start(
                ServiceSpec(
                    name=EXPORTER,
                    argv=[
                        str(Path(sys.executable).parent / "kappa"),
                        "airflow",
                        "metrics-exporter",
                        "--tag",
                        local.marker(EXPORTER),
                    ],
                    marker=local.marker(EXPORTER),
                    cwd=project_root(),
                    env=local.env(),
                )
            )
        )
    try:
        sup.wait_healthy(
            "api-server",
            lambda: healthy(local) is not None,
            timeout_s=local.stack.start_timeout_s * 2,
        )
    except Exception as exc:
        msg = f"the Airflow API server did not come up: {exc}"
        raise AirflowStartError(msg) from exc
    return pids


def down(local: LocalAirflow) -> dict[str, int | None]:
    sup = local.supervisor
    return {name: sup.stop(name) for name in (EXPORTER, *reversed(COMPONENTS))}


def status(local: LocalAirflow) -> dict[str, Any]:
    sup = local.supervisor
    return {
        "home": str(local.home),
        "url": local.url,
        "processes": {name: sup.pid(name) for name in (*COMPONENTS, EXPORTER)},
        "health": healthy(local),
    }


def password(local: LocalAirflow) -> str | None:
    """The generated password of the admin user, once the API server wrote it."""
    try:
        doc = json.loads(local.passwords_file.read_text())
    except (OSError, ValueError):
        return None
    value = doc.get(USER) if isinstance(doc, dict) else None
    return str(value) if value is not None else None


def backfill_args(
    start: datetime, end: datetime, *, reprocess: str, output: str | None, dry_run: bool
) -> list[str]:
    """``airflow backfill create`` for the intervals of ``[start, end)``.

    A run's logical date is its interval's start, so the logical dates are
    ``start, start + 6 h, ..., end - 6 h``.
    """
    for t in (start, end):
        if not on_schedule(t):
            msg = f"{t.isoformat()} is not on the six-hour schedule (00, 06, 12, 18 UTC)"
            raise NotOnScheduleError(msg)
    if end <= start:
        msg = f"the range is empty or reversed: {start.isoformat()} .. {end.isoformat()}"
        raise NotOnScheduleError(msg)
    args = [
        "backfill",
        "create",
        "--dag-id",
        DAG_ID,
        "--from-date",
        start.astimezone(UTC).isoformat(),
        "--to-date",
        (end - INTERVAL).astimezone(UTC).isoformat(),
        "--reprocess-behavior",
        reprocess,
        "--max-active-runs",
        "1",
    ]
    if output:
        args += ["--dag-run-conf", json.dumps({"output": output})]
    if dry_run:
        args.append("--dry-run")
    return args
