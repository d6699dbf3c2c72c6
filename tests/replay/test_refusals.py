"""Each refusal of ``kappa replay``: its message, exit status 1, and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from kappa import clients
from kappa.cli import main
from kappa.stack.testing import StackHandle
from tests.replay.conftest import DAY, CdrTopic, cdr, minutes

pytestmark = pytest.mark.integration


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stack: StackHandle,
    out: Path,
    topic: str,
    *args: str,
) -> tuple[int, str]:
    monkeypatch.setenv("KAPPA_KAFKA_BOOTSTRAP", stack.kafka.bootstrap)
    monkeypatch.setenv("KAPPA_SCHEMA_REGISTRY_URL", stack.registry.url)
    monkeypatch.setenv("KAPPA_REPLAY_METRICS_PORT", "0")
    with pytest.raises(SystemExit) as exit_:
        main(["replay", *args, "--output", str(out), "--topic", topic])
    return int(exit_.value.code or 0), capsys.readouterr().err


@pytest.fixture
def written(cdr_topic: Callable[..., CdrTopic]) -> CdrTopic:
    t = cdr_topic()
    t.write(cdr(i, DAY + minutes(i)) for i in range(60))
    return t


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir())


def test_reversed_range(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stack: StackHandle,
    written: CdrTopic,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    code, err = run_cli(
        monkeypatch,
        capsys,
        stack,
        out,
        written.name,
        "--from",
        "2026-01-01T01:00:00Z",
        "--to",
        "2026-01-01T00:00:00Z",
    )
    assert code == 1
    assert "kappa: error: the range [2026-01-01T01:00:00Z, 2026-01-01T00:00:00Z) is reversed" in err
    assert "Traceback" not in err
    assert_nothing_written(out)


def test_range_not_closed(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stack: StackHandle,
    written: CdrTopic,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now - timedelta(minutes=5)
    code, err = run_cli(
        monkeypatch,
        capsys,
        stack,
        out,
        written.name,
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
    )
    assert code == 1
    assert "is not closed yet" in err
    assert "15-minute lateness margin" in err
    assert_nothing_written(out)


def test_range_older_than_retention(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stack: StackHandle,
    cdr_topic: Callable[..., CdrTopic],
    tmp_path: Path,
) -> None:
    t = cdr_topic(config={"retention.ms": str(24 * 3600 * 1000)})
    out = tmp_path / "out"
    code, err = run_cli(
        monkeypatch,
        capsys,
        stack,
        out,
        t.name,
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2026-01-01T01:00:00Z",
    )
    assert code == 1
    assert f"is older than what {t.name} keeps: retention.ms=86400000" in err
    assert_nothing_written(out)


def test_records_deleted_from_the_range(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stack: StackHandle,
    written: CdrTopic,
    tmp_path: Path,
) -> None:
    admin = clients.admin(stack.kafka)
    futures = admin.delete_records([TopicPartition(written.name, 0, 3)])
    for f in futures.values():
        f.result(timeout=30)
    out = tmp_path / "out"
    code, err = run_cli(
        monkeypatch,
        capsys,
        stack,
        out,
        written.name,
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2026-01-01T00:30:00Z",
    )
    assert code == 1
    assert f"{written.name} partition 0 no longer holds its records before offset 3" in err
    assert_nothing_written(out)


def test_missing_topic(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stack: StackHandle,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    code, err = run_cli(
        monkeypatch,
        capsys,
        stack,
        out,
        "no.such.topic",
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2026-01-01T01:00:00Z",
    )
    assert code == 1
    assert "topic no.such.topic is not available" in err
    assert_nothing_written(out)
