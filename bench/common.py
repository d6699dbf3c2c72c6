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

from kappa.stack.testing import StackHandle, running_stack

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def bench_stack() -> Iterator[StackHandle]:
    """The stack KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL name, or a fresh one."""
    with (
        tempfile.TemporaryDirectory(prefix="kappa-bench-") as tmp,
        running_stack(Path(tmp), environ=os.environ) as handle,
    ):
        yield handle


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
