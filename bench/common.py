"""What every benchmark shares: a stack to run against and a place for figures."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings
from schemas.contract import SchemaName, parsed_schema, register, schema_text, subject
from schemas.wire import WireEncoder
from tests.harness.stack import StackHandle, running_stack

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def bench_stack() -> Iterator[StackHandle]:
    """The stack KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL name, or a fresh one."""
    with (
        tempfile.TemporaryDirectory(prefix="kappa-bench-") as tmp,
        running_stack(Path(tmp), environ=os.environ) as handle,
    ):
        yield handle


class CdrLoader:
    """Pre-loads a topic with ``Cdr`` records as fast as the client goes: the contract's
    ``Cdr`` registered under the topic's subject, large lz4 batches, acks=1."""

    def __init__(self, kafka: KafkaSettings, registry: RegistrySettings, topic: str) -> None:
        sid = register(clients.registry(registry), subject(topic), schema_text(SchemaName.CDR))
        self._encoder = WireEncoder(parsed_schema(SchemaName.CDR), sid)
        self._producer = Producer(
            {
                **kafka.client_config(),
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                "acks": "1",
            }
        )
        self.topic = topic
        self.sent = 0

    def send(self, record: dict[str, Any], timestamp_ms: int) -> None:
        """``record`` keyed by its ``call_id``, waiting while the client's queue is full."""
        value = self._encoder.encode(record)
        key = str(record["call_id"]).encode()
        while True:
            try:
                self._producer.produce(self.topic, key=key, value=value, timestamp=timestamp_ms)
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent += 1
        if self.sent % 50_000 == 0:
            self._producer.poll(0)

    def flush(self, timeout_s: float = 300.0) -> None:
        self._producer.flush(timeout_s)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_results(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(
        json.dumps({"benchmark": name, "machine": machine(), **figures}, indent=2) + "\n"
    )
    print(json.dumps(figures, indent=2))
    print(f"written to {path}")
    return path
