"""Each refusal of ``kappa replay``: its message, exit status 1, and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from cli import main
from kappa import clients
from tests.harness.stack import StackHandle
from tests.replay.conftest import DAY, CdrTopic, cdr, minutes

pytestmark = pytest.mark.integration

Refuse = Callable[[str, str, str], str]


@pytest.fixture
def refuse(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stack: StackHandle,
    tmp_path: Path,
) -> Refuse:
    """``kappa replay --topic T --from A --to B``, which must exit 1 and write nothing;
    returns its stderr."""
    monkeypatch.setenv("KAPPA_KAFKA_BOOTSTRAP", stack.kafka.bootstrap)
    monkeypatch.setenv("KAPPA_SCHEMA_REGISTRY_URL", stack.registry.url)
    monkeypatch.setenv("KAPPA_REPLAY_METRICS_PORT", "0")
    out = tmp_path / "out"

    def run(topic: str, start: str, end: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["replay", "--from", start, "--to", end, "--output", str(out), "--topic", topic])
        err = capsys.readouterr().err
        assert exit_.value.code == 1, err
        assert "Traceback" not in err
        assert not out.exists() or not any(out.iterdir())
        return err

    return run


@pytest.fixture
def written(cdr_topic: Callable[..., CdrTopic]) -> CdrTopic:
    t = cdr_topic()
    t.write(cdr(i, DAY + minutes(i)) for i in range(60))
    return t


def test_reversed_range(refuse: Refuse, written: CdrTopic) -> None:
    err = refuse(written.name, "2026-01-01T01:00:00Z", "2026-01-01T00:00:00Z")
    assert "kappa: error: the range [2026-01-01T01:00:00Z, 2026-01-01T00:00:00Z) is reversed" in err


def test_range_not_closed(refuse: Refuse, written: CdrTopic) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now - timedelta(minutes=5)
    err = refuse(written.name, start.isoformat(), end.isoformat())
    assert "is not closed yet" in err
    assert "15-minute lateness margin" in err


def test_range_older_than_retention(refuse: Refuse, cdr_topic: Callable[..., CdrTopic]) -> None:
    t = cdr_topic(config={"retention.ms": str(24 * 3600 * 1000)})
    err = refuse(t.name, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    assert f"is older than what {t.name} keeps: retention.ms=86400000" in err


def test_records_deleted_from_the_range(
    refuse: Refuse, stack: StackHandle, written: CdrTopic
) -> None:
    admin = clients.admin(stack.kafka)  # held: its futures die with it
    futures = admin.delete_records([TopicPartition(written.name, 0, 3)])
    for f in futures.values():
        f.result(timeout=30)
    err = refuse(written.name, "2026-01-01T00:00:00Z", "2026-01-01T00:30:00Z")
    assert f"{written.name} partition 0 no longer holds its records before offset 3" in err


def test_missing_topic(refuse: Refuse) -> None:
    err = refuse("no.such.topic", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    assert "topic(s) no.such.topic does not exist" in err
