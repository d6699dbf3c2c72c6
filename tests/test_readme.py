"""Every command of the README's shell blocks, run in order as a user would, on a stack of its own.

The README is parsed when the tests are collected: each line of a ```bash block
(a trailing backslash joins lines; comment lines are skipped) is one test,
named by its line. The commands run one after another in one temporary state
folder (``KAPPA_STATE_DIR``), through ``bash`` from the repository root, with
the environment a previous command left (``eval "$(kappa airflow env)"``
carries over). A command fails its test on a non-zero exit or a Python
traceback in its output.

What the test does besides the README's words, and why:

* Ports: every service of this stack runs on free ports (``KAPPA_*_PORT``), so the
  test never meets the session's stack or anyone else's; the placeholders the
  README documents are filled in with them: ``broker:9092`` and
  ``http://registry:8085/...`` (the Settings example) and the local HDFS address
  ``127.0.0.1:9000``.
* A running stack: the README's sections each assume the local stack runs (a
  reader has it up). Before a command that needs Kafka (or HDFS, for an
  ``hdfs://`` URL) and finds it stopped, the test runs ``kappa stack up`` (``--with-hdfs``).
* Bounded commands (``BOUNDED``): those that run until stopped (``--follow``,
  ``kappa validate``, ``kappa aggregate`` without ``--available-now``, ``&``
  background jobs) or for minutes of wall time (``make demo``, ``--duration 60``,
  a million CDRs, a simulated clock at 100 CDRs a second) run for a few seconds;
  they pass if they are still running, or exited with 0, with no traceback.
  Then their process group is interrupted (SIGINT, as Ctrl-C).
* Skipped (``SKIPPED``, with the reason in the report): commands that need a
  Docker engine when there is none, the test suite and the benchmarks (they
  would run the suite inside itself, or minutes of full load), and the local
  multi-node cluster (nine JVMs on the test machine's two cores; the chaos test
  runs it).

At the end, ``kappa airflow down`` and ``kappa stack down`` stop what the
commands started, and any background job left is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stack.net import free_ports, port_open
from tests.harness.containers import docker_unavailable_reason

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = REPO / ".venv" / "bin"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    section: str

    @property
    def id(self) -> str:
        words = re.sub(r"\s+#.*$", "", self.text).replace(".venv/bin/", "").split()
        words = [w for w in words if "=" not in w or w.startswith("-")]
        return f"L{self.line}-" + "-".join(re.sub(r"\W+", "", w) for w in words[:4] if w)


def parse(text: str) -> list[Command]:
    """The commands of the ```bash blocks, in order."""
    out: list[Command] = []
    section, fence, pending, start = "", None, "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is None and line.startswith("#"):
            section = line.lstrip("#").strip()
        if line.startswith("```"):
            fence = line.strip().removeprefix("```") if fence is None else None
            continue
        if fence != "bash":
            continue
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append(Command(start, pending + stripped, section))
        pending = ""
    return out


COMMANDS = parse(README.read_text(encoding="utf-8"))

_DOCKER = r"\bdocker\b|compose-up|compose/\.env"
SKIPPED: list[tuple[str, str]] = [
    (r"^make test\b", "runs the test suite, from inside the test suite"),
    (r"^make bench", "a benchmark: minutes of full load, run on demand, never in the suite"),
    (
        r"--cluster",
        "the local multi-node cluster (nine JVMs on two cores): tests/stack/test_chaos.py runs it",
    ),
]
# (pattern, seconds, why): run for that long, then interrupted
BOUNDED: list[tuple[str, float, str]] = [
    (r"^make demo\b", 45.0, "produces for a minute, then summarises"),
    (r"&\s*$", 10.0, "a background job"),
    (r"--follow\b", 6.0, "follows the topic until Ctrl-C"),
    (r"kappa validate\s*(#.*)?$", 10.0, "validates until SIGTERM"),
    (r"kappa aggregate(?!.*(--available-now|--show))", 30.0, "aggregates until Ctrl-C"),
]
PRODUCE_BOUND_S = 8.0  # for a `kappa produce` that would take over LONG_PRODUCE_S
LONG_PRODUCE_S = 15.0
FAST_RATE = 50_000.0  # CDRs a second of `--rate 0`, roughly, on two busy cores
# Commands that need no running stack.
NO_STACK = re.compile(
    r"^(make (help|check|airflow|demo)|eval |\.venv/bin/airflow "
    r"|\.venv/bin/kappa (stack|settings|airflow))"
)


def skip_reason(cmd: Command) -> str | None:
    if re.search(_DOCKER, cmd.text):
        return docker_unavailable_reason()
    if "multi-node cluster" in cmd.section:
        return SKIPPED[2][1]
    return next((why for pattern, why in SKIPPED if re.search(pattern, cmd.text)), None)


def produce_seconds(text: str) -> float | None:
    """How long a `kappa produce` line runs: --duration, or --count at --rate (default 10/s)."""
    if "kappa produce" not in text:
        return None
    flags = dict(re.findall(r"--(rate|count|duration) ([0-9.]+)", text))
    if "duration" in flags:
        return float(flags["duration"])
    rate = float(flags.get("rate", 10)) or FAST_RATE
    return float(flags.get("count", "inf")) / rate


def bound(cmd: Command) -> float | None:
    seconds = produce_seconds(cmd.text)
    if seconds is not None and seconds > LONG_PRODUCE_S and not cmd.text.rstrip().endswith("&"):
        return PRODUCE_BOUND_S
    return next((s for pattern, s, _ in BOUNDED if re.search(pattern, cmd.text)), None)


@dataclass
class Session:
    """One user's shell: the environment, the stack's ports, the jobs left in the background."""

    state: Path
    env: dict[str, str]
    ports: dict[str, int]
    logs: Path
    background: list[int] = field(default_factory=list)

    def fill(self, text: str) -> str:
        """The README's documented placeholders, with this stack's addresses."""
        return (
            text.replace("broker:9092", self.env["KAPPA_KAFKA_BOOTSTRAP"])
            .replace("http://registry:8085/apis/ccompat/v7", self.env["KAPPA_SCHEMA_REGISTRY_URL"])
            .replace("127.0.0.1:9000", f"127.0.0.1:{self.ports['hdfs_namenode']}")
        )

    def ensure_stack(self, cmd: Command) -> None:
        if NO_STACK.match(cmd.text):
            return
        hdfs = "hdfs://" in cmd.text
        up = port_open(self.ports["kafka"]) and port_open(self.ports["registry"])
        if up and (not hdfs or port_open(self.ports["hdfs_namenode"])):
            return
        args = ["stack", "up", *(["--with-hdfs"] if hdfs else [])]
        done = subprocess.run(
            [str(BIN / "kappa"), *args], env=self.env, cwd=REPO, capture_output=True,
            text=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def run(self, cmd: Command) -> tuple[int | None, str]:
        """Run it; the exit code (None: still running at its bound) and the output (up to
        the interrupt, for a bounded one)."""
        limit = bound(cmd)
        out_file = self.logs / f"{cmd.id}.log"
        env_file = self.logs / f"{cmd.id}.env"
        script = (
            f"set -o pipefail\n{self.fill(cmd.text)}\n__rc=$?\nenv -0 > {env_file}\nexit $__rc\n"
        )
        with out_file.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", script], env=self.env, cwd=REPO, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            code: int | None
            try:
                code = proc.wait(timeout=limit if limit is not None else 900)
            except subprocess.TimeoutExpired:
                if limit is None:
                    raise
                code = None
        if limit is not None and code is not None and cmd.text.rstrip().endswith("&"):
            time.sleep(limit)  # the job runs on in the background
            self.background.append(proc.pid)
            code = None if _group_alive(proc.pid) else code
        seen = out_file.read_text(errors="replace")  # before Ctrl-C, which may print a traceback
        if code is None:
            interrupt(proc.pid)
            return None, seen
        if env_file.exists():
            pairs = env_file.read_bytes().split(b"\0")
            self.env = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
            self.env.pop("_", None)
        return code, seen


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def interrupt(pgid: int) -> None:
    """Ctrl-C to the command's process group, then harder if it lingers."""
    for sig, wait_s in ((signal.SIGINT, 8.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.2)
        if not _group_alive(pgid):
            return


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    state = tmp_path_factory.mktemp("readme")
    logs = tmp_path_factory.mktemp("readme-logs")
    names = ["kafka", "controller", "registry", "hdfs_namenode", "hdfs_http", "prometheus"]
    names += ["airflow", "airflow_metrics", "producer", "validator", "aggregate", "replay"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAPPA_", "AIRFLOW"))}
    env.update(
        {
            "KAPPA_STATE_DIR": str(state),
            "KAPPA_KAFKA_PORT": str(ports["kafka"]),
            "KAPPA_CONTROLLER_PORT": str(ports["controller"]),
            "KAPPA_REGISTRY_PORT": str(ports["registry"]),
            "KAPPA_HDFS_NAMENODE_PORT": str(ports["hdfs_namenode"]),
            "KAPPA_HDFS_HTTP_PORT": str(ports["hdfs_http"]),
            "KAPPA_PROMETHEUS_PORT": str(ports["prometheus"]),
            "KAPPA_KAFKA_BOOTSTRAP": f"localhost:{ports['kafka']}",
            "KAPPA_SCHEMA_REGISTRY_URL": f"http://localhost:{ports['registry']}/apis/ccompat/v7",
            "KAPPA_AIRFLOW_PORT": str(ports["airflow"]),
            "KAPPA_AIRFLOW_METRICS_PORT": str(ports["airflow_metrics"]),
            "KAPPA_PRODUCER_METRICS_PORT": str(ports["producer"]),
            "KAPPA_VALIDATOR_METRICS_PORT": str(ports["validator"]),
            "KAPPA_AGGREGATE_METRICS_PORT": str(ports["aggregate"]),
            "KAPPA_REPLAY_METRICS_PORT": str(ports["replay"]),
            "KAPPA_AGGREGATE_SHUFFLE_PARTITIONS": "2",
        }
    )
    s = Session(state, env, ports, logs)
    try:
        yield s
    finally:
        for pgid in s.background:
            interrupt(pgid)
        for args in (["airflow", "down"], ["stack", "down"]):
            subprocess.run(
                [str(BIN / "kappa"), *args], env=s.env, cwd=REPO, capture_output=True,
                timeout=300, check=False,
            )  # fmt: skip


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.id for c in COMMANDS])
def test_readme_command(cmd: Command, session: Session) -> None:
    reason = skip_reason(cmd)
    if reason is not None:
        pytest.skip(f"README line {cmd.line}: {reason}")
    session.ensure_stack(cmd)
    code, output = session.run(cmd)
    where = f"README line {cmd.line} ({cmd.section}): {cmd.text}\n{output[-4000:]}"
    assert "Traceback (most recent call last)" not in output, where
    assert code in (0, None), f"exit {code}: {where}"
    if code is None:
        assert bound(cmd) is not None, where


def test_the_readme_has_commands_and_every_one_is_accounted_for() -> None:
    assert len(COMMANDS) > 40
    airflow = [c.text.split("#")[0].strip() for c in COMMANDS if "Airflow" in c.section]
    assert ".venv/bin/airflow dags trigger kappa_replay" in airflow
