"""A local Airflow run as users run it, for the tests: `kappa airflow up`, the airflow CLI, its API.

``LiveAirflow`` starts the api-server, scheduler and dag-processor with ``kappa
airflow up`` (LocalExecutor, SQLite) in an environment of the test's choosing,
runs ``airflow`` commands with the exports of ``kappa airflow env``, and reads
DAG runs and task instances from the REST API (a token of the simple auth
manager). ``down()`` stops every process ``up`` started.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
DAG_ID = "kappa_replay"
DONE = {"success", "failed"}


def run(argv: list[str], env: dict[str, str], timeout_s: float = 300.0) -> str:
    done = subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, f"{shlex.join(argv)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


@dataclass
class LiveAirflow:
    env: dict[str, str]  # what `kappa airflow up` runs with (KAPPA_* of the test)
    url: str = ""
    airflow_env: dict[str, str] = field(default_factory=dict)
    _token: str | None = None

    def up(self) -> str:
        out = run([str(BIN / "kappa"), "airflow", "up"], self.env, timeout_s=600)
        exports = run([str(BIN / "kappa"), "airflow", "env"], self.env)
        self.airflow_env = dict(self.env)
        for line in exports.splitlines():  # what `eval "$(kappa airflow env)"` sets
            key, value = line.removeprefix("export ").split("=", 1)
            self.airflow_env[key] = shlex.split(value)[0] if value else ""
        self.url = self.airflow_env["AIRFLOW__API__BASE_URL"]
        return out

    def down(self) -> None:
        subprocess.run(
            [str(BIN / "kappa"), "airflow", "down"],
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )

    def airflow(self, *args: str) -> str:
        return run([str(BIN / "airflow"), *args], self.airflow_env)

    # -- the REST API ----------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def api(self, path: str) -> Any:
        if self._token is None:
            home = Path(self.airflow_env["AIRFLOW_HOME"])
            users = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
            got = self._request(
                "POST", "/auth/token", {"username": "admin", "password": users["admin"]}
            )
            self._token = got["access_token"]
        return self._request("GET", "/api/v2" + path)

    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.api(f"/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]
        return runs

    def tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        quoted = urllib.request.quote(run_id, safe="")
        got = self.api(f"/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances")
        return {ti["task_id"]: ti for ti in got["task_instances"]}

    def wait(self, count: int, timeout_s: float = 600.0) -> list[dict[str, Any]]:
        """The first ``count`` runs, once each has finished (success or failed)."""
        deadline = time.monotonic() + timeout_s
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = sorted(self.runs(), key=lambda r: r["run_after"])
            if len(runs) >= count and all(r["state"] in DONE for r in runs[:count]):
                return runs[:count]
            time.sleep(2)
        states = {r["dag_run_id"]: r["state"] for r in runs}
        msg = f"the DAG runs did not finish within {timeout_s:.0f} s: {states}"
        raise AssertionError(msg)

    def task_log(self, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log file, as the api-server serves it (LocalExecutor: files in the home)."""
        home = Path(self.airflow_env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
        found = sorted(
            home.glob(f"dag_id={DAG_ID}/run_id={run_id}/task_id={task_id}/attempt={try_number}*")
        )
        return "\n".join(p.read_text(errors="replace") for p in found)
