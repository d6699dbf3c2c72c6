"""The manifest of a published replay (``manifest.json``), typed.

The JSON keeps the keys (and their order) replays have always written, so the
manifests already published read back; keys added since (``summary.stage_seconds``,
``aggregation``, ...) may be absent from an older one. ``path`` (where the range
was published) and ``summary.seconds_with_startup`` are set after the file is
written: they are in what a run returns, never in the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Range:
    start: str  # "from"
    end: str  # "to"
    from_ms: int
    to_ms: int
    lateness_margin_s: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.start,
            "to": self.end,
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "lateness_margin_s": self.lateness_margin_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Range:
        return cls(
            d["from"], d["to"], int(d["from_ms"]), int(d["to_ms"]), int(d["lateness_margin_s"])
        )


@dataclass(frozen=True)
class PartitionCounts:
    """Offsets planned and read of one partition."""

    partition: int
    start_offset: int
    end_offset: int
    read: int = 0
    in_range: int = 0
    first_offset_read: int | None = None
    last_offset_read: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartitionCounts:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Counts:
    """Records read, and where they stand against the range."""

    read: int = 0
    before_range: int = 0
    records: int = 0
    after_range: int = 0
    undecodable: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        return cls(**{k: int(d[k]) for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Summary:
    records: int
    callers: int
    towers: int
    revenue: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    seconds_with_startup: float | None = None  # set by the runner, not in the file

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["stage_seconds"] = dict(self.stage_seconds)
        if self.seconds_with_startup is None:
            del out["seconds_with_startup"]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Summary:
        return cls(
            records=int(d["records"]),
            callers=int(d["callers"]),
            towers=int(d["towers"]),
            revenue=float(d["revenue"]),
            stage_seconds=dict(d.get("stage_seconds", {})),
            seconds=float(d.get("seconds", 0.0)),
            seconds_with_startup=d.get("seconds_with_startup"),
        )


@dataclass(frozen=True)
class Outputs:
    cdr: str
    billing_report: str
    network_health: str
    partitioned_by: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cdr": self.cdr,
            "billing_report": self.billing_report,
            "network_health": self.network_health,
            "partitioned_by": list(self.partitioned_by),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outputs:
        return cls(
            d["cdr"], d["billing_report"], d["network_health"], tuple(d.get("partitioned_by", ()))
        )


@dataclass(frozen=True)
class Rates:
    voice_per_minute: float
    sms_each: float
    data_per_mb: float
    currency: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rates:
        return cls(d["voice_per_minute"], d["sms_each"], d["data_per_mb"], d.get("currency", ""))


@dataclass(frozen=True)
class Aggregation:
    """The aggregation's definitions the range was computed with."""

    window: str
    low_signal_threshold: float
    rates: Rates

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "low_signal_threshold": self.low_signal_threshold,
            "rates": self.rates.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Aggregation:
        return cls(d["window"], d["low_signal_threshold"], Rates.from_dict(d["rates"]))


@dataclass(frozen=True)
class Manifest:
    """What a replay of a range read, counted and wrote."""

    run_id: str
    range: Range
    topic: str
    partitions: tuple[PartitionCounts, ...]
    counts: Counts
    schema_ids: dict[str, int]
    summary: Summary
    version: int = MANIFEST_VERSION
    planned_at: str | None = None
    finished_at: str | None = None
    outputs: Outputs | None = None
    aggregation: Aggregation | None = None
    path: str = ""  # where it was published; not in the file

    @property
    def currency(self) -> str:
        return self.aggregation.rates.currency if self.aggregation else ""

    def published_at(self, path: str) -> Manifest:
        return replace(self, path=path)

    def with_summary(self, **changes: Any) -> Manifest:
        return replace(self, summary=replace(self.summary, **changes))

    def to_dict(self, *, with_path: bool = True) -> dict[str, Any]:
        """The JSON object, keys in the file's order (``path`` last, when known)."""
        out: dict[str, Any] = {
            "version": self.version,
            "run_id": self.run_id,
            "range": self.range.to_dict(),
            "topic": self.topic,
        }
        if self.planned_at is not None:
            out["planned_at"] = self.planned_at
        if self.finished_at is not None:
            out["finished_at"] = self.finished_at
        out["partitions"] = [p.to_dict() for p in self.partitions]
        out["counts"] = self.counts.to_dict()
        out["schema_ids"] = dict(self.schema_ids)
        out["summary"] = self.summary.to_dict()
        if self.outputs is not None:
            out["outputs"] = self.outputs.to_dict()
        if self.aggregation is not None:
            out["aggregation"] = self.aggregation.to_dict()
        if with_path and self.path:
            out["path"] = self.path
        return out

    def to_json(self, *, with_path: bool = False) -> str:
        """``manifest.json``'s text (without ``path`` unless asked)."""
        return json.dumps(self.to_dict(with_path=with_path), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        return cls(
            run_id=d["run_id"],
            range=Range.from_dict(d["range"]),
            topic=d["topic"],
            partitions=tuple(PartitionCounts.from_dict(p) for p in d.get("partitions", [])),
            counts=Counts.from_dict(d["counts"]),
            schema_ids={str(k): int(v) for k, v in d.get("schema_ids", {}).items()},
            summary=Summary.from_dict(d["summary"]),
            version=int(d.get("version", MANIFEST_VERSION)),
            planned_at=d.get("planned_at"),
            finished_at=d.get("finished_at"),
            outputs=Outputs.from_dict(d["outputs"]) if "outputs" in d else None,
            aggregation=Aggregation.from_dict(d["aggregation"]) if "aggregation" in d else None,
            path=d.get("path", ""),
        )

    @classmethod
    def from_json(cls, text: str, *, path: str | None = None) -> Manifest:
        """A manifest read back (``path``: where it was found, when it is not in the text)."""
        loaded = cls.from_dict(json.loads(text))
        return loaded if path is None else loaded.published_at(path)
