"""What a replay run needs besides its plan, and its id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kappa.settings import AggregateSettings, KafkaSettings, RegistrySettings


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class ReplayContext:
    """What a replay needs besides its plan: connections and the aggregation's definitions."""

    kafka: KafkaSettings
    registry: RegistrySettings
    aggregate: AggregateSettings
    output_root: str
    progress: bool = True
    records_per_task: int = 250_000
