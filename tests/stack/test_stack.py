"""The embedded local stack: real JVMs started, answered, stopped."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from cli.stack import stack as stack_cli
from kappa.settings import StackSettings, TopicSettings
from stack import LocalStack
from stack.exceptions import ArtifactsMissingError, JavaNotFoundError, PortInUseError
from stack.process import ServiceSpec, Supervisor, alive
from tests.harness.stack import (
    HdfsHandle,
    StackHandle,
    TopicFactory,
    external_stack,
    free_port_settings,
)

SCHEMA = {
    "type": "record",
    "name": "Probe",
    "namespace": "kappa.test",
    "fields": [{"name": "n", "type": "long"}],
}


def _our_pids(state_dir: Path) -> set[int]:
    """Processes whose command line carries this state dir's marker."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "-Dkappa.service=" in cmdline and f"@{state_dir.resolve()}" in cmdline:
            found.add(int(proc.name))
    return found


def _env(settings: StackSettings) -> dict[str, str]:
    return {
        "KAPPA_STATE_DIR": str(settings.state_dir),
        "KAPPA_DEPS_DIR": str(settings.deps_dir),
        "KAPPA_KAFKA_PORT": str(settings.kafka_port),
        "KAPPA_CONTROLLER_PORT": str(settings.controller_port),
        "KAPPA_REGISTRY_PORT": str(settings.registry_port),
    }


def _post_json(url: str, body: object) -> dict[str, object]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, object] = json.loads(resp.read())
    return result


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """A stack of this test only (the session stack must stay up for the others)."""
    local = LocalStack(free_port_settings(tmp_path / "state"), die_with_parent=True)
    try:
        yield local
    finally:
        local.down()
        assert not _our_pids(local.layout.state_dir)


@pytest.mark.integration
def test_up_status_down_and_schemas_survive_a_restart(own_stack: LocalStack) -> None:
    state_dir = own_stack.layout.state_dir
    rows = {r.name: r for r in own_stack.up()}
    assert rows["kafka"].health == "up"
    assert rows["registry"].health == "up"
    pids = {rows["kafka"].pid, rows["registry"].pid}
    assert None not in pids
    assert pids <= _our_pids(state_dir)

    # up twice is harmless: same processes
    again = {r.name: r.pid for r in own_stack.up()}
    assert set(again.values()) == pids

    # the pipeline's topics exist
    admin = AdminClient(own_stack.kafka_settings().client_config())
    topics = admin.list_topics(timeout=10).topics
    assert set(TopicSettings().all()) <= set(topics)
    assert len(topics[TopicSettings().raw].partitions) == TopicSettings().partitions

    # status through the CLI
    runner = CliRunner()
    result = runner.invoke(stack_cli, ["status", "--json"], env=_env(own_stack.settings))
    assert result.exit_code == 0, result.output
    services = {s["name"]: s for s in json.loads(result.output)["services"]}
    assert services["kafka"]["health"] == "up"
    assert services["registry"]["pid"] == rows["registry"].pid
    assert services["registry"]["port"] == own_stack.settings.registry_port

    url = own_stack.registry_settings().url
    schema_id = _post_json(f"{url}/subjects/x/versions", {"schema": json.dumps(SCHEMA)})["id"]
    cluster_id = (state_dir / "kafka" / "cluster.id").read_text()

    stopped = own_stack.down()
    assert set(stopped) == {"kafka", "registry"}
    assert not _our_pids(state_dir)
    assert {r.health for r in own_stack.status()} == {"down"}
    result = runner.invoke(stack_cli, ["status"], env=_env(own_stack.settings))
    assert result.exit_code == 1

    own_stack.up()
    latest = _get_json(f"{url}/subjects/x/versions/latest")
    assert latest["id"] == schema_id
    assert json.loads(str(latest["schema"])) == SCHEMA
    assert (state_dir / "kafka" / "cluster.id").read_text() == cluster_id


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = free_port_settings(tmp_path / "state", kafka_port=taken)
        with pytest.raises(PortInUseError, match=f"port {taken} \\(kafka\\) is already in use"):
            LocalStack(settings).up()

        result = CliRunner().invoke(stack_cli, ["up"], env=_env(settings))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "already in use" in lines[0]
    assert "KAPPA_KAFKA_PORT" in lines[0]
    assert "Traceback" not in result.output
    assert not _our_pids(tmp_path / "state")


def test_missing_artifacts_point_at_make_install(tmp_path: Path) -> None:
    settings = free_port_settings(tmp_path / "state", deps_dir=tmp_path / "empty")
    with pytest.raises(ArtifactsMissingError, match="make install"):
        LocalStack(settings).up()
    result = CliRunner().invoke(stack_cli, ["up"], env=_env(settings))
    assert result.exit_code == 1
    assert "make install" in result.output
    assert "Traceback" not in result.output


def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    settings = free_port_settings(tmp_path / "state", java_home=tmp_path / "no-jdk")
    with pytest.raises(JavaNotFoundError, match="no working java"):
        LocalStack(settings).up()


def test_session_stack_round_trips_a_record(stack: StackHandle, topic: TopicFactory) -> None:
    name = topic(partitions=3)
    producer = Producer(stack.kafka.client_config())
    producer.produce(name, key=b"k", value=b"hello")
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            **stack.kafka.client_config(),
            "group.id": f"{name}.reader",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([name])
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None
        assert msg.error() is None
        assert msg.value() == b"hello"
    finally:
        consumer.close()
    assert isinstance(_get_json(f"{stack.registry.url}/schemas/types"), list)


def _webhdfs(
    handle: HdfsHandle, method: str, path: str, op: str, body: bytes | None = None
) -> bytes:
    """One WebHDFS call, following the NameNode's redirect to the DataNode by hand."""
    query = urllib.parse.urlencode({"op": op, "user.name": "kappa", "overwrite": "true"})
    target = f"{handle.http_url}/webhdfs/v1{path}?{query}"
    for _ in range(3):
        parts = urllib.parse.urlsplit(target)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            conn.request(method, f"{parts.path}?{parts.query}", body=body)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status in (301, 302, 307):
                target = resp.getheader("Location") or ""
                continue
            assert resp.status < 300, (resp.status, data)
            return data
        finally:
            conn.close()
    raise AssertionError("too many redirects")


def test_hdfs_takes_a_write_and_reads_it_back(hdfs: HdfsHandle) -> None:
    payload = b"caller,callee\n+94771234567,+94777654321\n"
    _webhdfs(hdfs, "PUT", "/smoke/cdr.csv", "CREATE", payload)
    assert _webhdfs(hdfs, "GET", "/smoke/cdr.csv", "OPEN") == payload
    assert hdfs.url.startswith("hdfs://127.0.0.1:")
    assert hdfs.path("smoke", "cdr.csv") == f"{hdfs.url}/smoke/cdr.csv"


def test_a_pid_file_is_believed_only_with_the_marker(tmp_path: Path) -> None:
    """A recycled pid, or anybody else's process, is never signalled."""
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        supervisor = Supervisor(tmp_path)
        supervisor.run_dir.mkdir(parents=True)
        record = {"pid": stranger.pid, "marker": "-Dkappa.service=kafka@/elsewhere"}
        supervisor.pid_file("kafka").write_text(json.dumps(record))
        assert supervisor.pid("kafka") is None
        assert supervisor.stop("kafka") is None
        assert alive(stranger.pid)
        assert not supervisor.pid_file("kafka").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_child_this_process_started_is_ours_before_its_command_line_shows(
    tmp_path: Path,
) -> None:
    """Between exec and the kernel setting up its arguments a new process has an empty
    command line (no marker yet): the one this supervisor started is still ours, its pid
    file kept, so `up` does not call it dead and `down` still stops it."""
    supervisor = Supervisor(tmp_path)
    spec = ServiceSpec(
        name="sleeper", argv=["sleep", "30"], marker="-Dkappa.service=x@nowhere", cwd=tmp_path
    )
    pid = supervisor.start(spec)
    try:
        assert supervisor.pid("sleeper") == pid  # no marker in its command line
        assert supervisor.pid_file("sleeper").exists()
        assert supervisor.stop("sleeper", grace_s=5) == pid
        assert not alive(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_the_environment_can_point_at_a_running_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert external_stack({}, tmp_path) is None
    monkeypatch.setenv("KAPPA_KAFKA_BOOTSTRAP", "broker.example:19092")
    monkeypatch.setenv("KAPPA_SCHEMA_REGISTRY_URL", "http://registry.example:18081")
    handle = external_stack(os.environ, tmp_path)
    assert handle is not None
    assert handle.external
    assert handle.bootstrap == "broker.example:19092"
    assert handle.registry_url == "http://registry.example:18081"
    assert handle.stack_settings.kafka_port != 9092
