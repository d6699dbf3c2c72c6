"""Where the aggregation writes: its Parquet folders and its checkpoint.

Shared by the job, the replay (which reads the late rows) and the parity check,
none of which needs the job itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kappa.settings import AggregateSettings, StackSettings
from streams.aggregate.tables import TABLES

LATE_TABLE = "late"
UNDECODABLE_TABLE = "undecodable"
TABLE_FOLDERS = (*[t.folder for t in TABLES], LATE_TABLE, UNDECODABLE_TABLE)


def _location(value: str) -> str:
    """A Hadoop URL as given; a plain path made absolute."""
    return value.rstrip("/") if "://" in value else str(Path(value).resolve())


@dataclass(frozen=True)
class Paths:
    """Where the job writes: the Parquet root and the checkpoint, each a local path or a
    Hadoop URL (``file://``, ``hdfs://``)."""

    output: str
    checkpoint: str

    @classmethod
    def resolve(
        cls, settings: AggregateSettings, stack: StackSettings, output: str | None = None
    ) -> Paths:
        out = output or settings.output or str(stack.state_dir / "aggregate")
        ckpt = settings.checkpoint_dir or str(stack.state_dir / "checkpoints" / "aggregate")
        return cls(output=_location(out), checkpoint=_location(ckpt))
