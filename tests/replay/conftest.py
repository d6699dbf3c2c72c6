"""Fixtures of the replay tests: a fresh cdr.valid-like topic and a writer of Cdr records."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kappa import clients
from kappa.settings import AggregateSettings, ReplaySettings
from replay import runner
from schemas import SchemaName, WireEncoder, parsed_schema, schema_text
from schemas.contract import register, subject
from tests.harness.stack import StackHandle, TopicFactory

# A fixed, closed past: 2026-01-01, UTC.
DAY = datetime(2026, 1, 1, tzinfo=UTC)

CALLERS = [f"+9471{i:07d}" for i in range(1, 9)]
TOWERS = [f"TOWER_{i:03d}" for i in range(1, 5)]


def cdr(
    n: int,
    event_time: datetime,
    *,
    call_type: str = "VOICE",
    caller: str | None = None,
    tower: str | None = None,
) -> dict[str, Any]:
    """A valid Cdr record, deterministic in ``n``."""
    return {
        "call_id": f"call-{n:06d}",
        "caller_num": caller or CALLERS[n % len(CALLERS)],
        "callee_num": CALLERS[(n + 3) % len(CALLERS)],
        "call_type": call_type,
        "duration_sec": 0 if call_type == "SMS" else (n * 37) % 600,
        "event_time": event_time,
        "tower_id": tower or TOWERS[n % len(TOWERS)],
        "signal_strength": 1 + n % 5,
        "data_volume_kb": (n * 101) % 5000 if call_type == "DATA" else 0,
    }


@dataclass
class CdrTopic:
    """A fresh topic carrying Cdr records, the message timestamp being the event time."""

    name: str
    stack: StackHandle
    schema_id: int

    def write(self, records: Iterable[dict[str, Any]]) -> int:
        enc = WireEncoder(parsed_schema(SchemaName.CDR), self.schema_id)
        producer = clients.producer(self.stack.kafka)
        n = 0
        for rec in records:
            ms = int(rec["event_time"].timestamp() * 1000)
            producer.produce(
                self.name, key=rec["call_id"].encode(), value=enc.encode(rec), timestamp=ms
            )
            n += 1
            if n % 10_000 == 0:
                producer.poll(0)
        assert producer.flush(30) == 0
        return n


@pytest.fixture
def cdr_topic(stack: StackHandle, topic: TopicFactory) -> Callable[..., CdrTopic]:
    def make(partitions: int = 3, config: dict[str, str] | None = None) -> CdrTopic:
        name = topic(partitions, prefix="replay", config=config)
        sid = register(clients.registry(stack.registry), subject(name), schema_text(SchemaName.CDR))
        return CdrTopic(name, stack, sid)

    return make


def settings_for(stack: StackHandle, output: Path | str, margin_s: int = 900) -> runner.Settings:
    return runner.Settings(
        kafka=stack.kafka,
        registry=stack.registry,
        topics=stack.topics,
        stack=stack.stack_settings,
        aggregate=AggregateSettings(),
        replay=ReplaySettings(output=str(output), lateness_margin_s=margin_s, progress=False),
    )


def minutes(m: float) -> timedelta:
    return timedelta(minutes=m)


def unique() -> str:
    return uuid.uuid4().hex[:8]


def published_folder(root: Path, rid: str) -> Path:
    """The version folder a local range's pointer (``<root>/<rid>/CURRENT``) names."""
    folder = root / rid
    return folder / (folder / "CURRENT").read_text(encoding="utf-8").strip()
