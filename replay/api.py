"""Thin entry points for orchestration (Airflow tasks): one call per step of an interval.

Each reads the settings itself (they are entry points), reuses the process's
SparkSession if one runs, and returns a typed result with ``to_dict()`` (XCom-friendly).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from replay import published, runner, verify
from replay.exceptions import ReplayVerificationError
from replay.manifest import Manifest
from replay.plan import iso, range_id
from replay.verify import VerificationReport
from replay.write import CDR_DIR, MANIFEST, SUCCESS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntervalFigures:
    """Records, customers (distinct callers), towers and revenue of a replayed interval."""

    start: str
    end: str
    records: int
    customers: int
    towers: int
    revenue: float
    currency: str
    run_id: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        return {"from": out.pop("start"), "to": out.pop("end"), **out}


def replay_interval(start: datetime, end: datetime, output: str | None = None) -> Manifest:
    """Replay ``[start, end)`` of cdr.valid to ``output`` (default: the settings'); the manifest."""
    s = runner.Settings.load()
    return runner.replay_range(s, start, end, output=output)


def verify_interval(
    start: datetime, end: datetime, output: str | None = None
) -> VerificationReport:
    """Check the published replay of ``[start, end)``: ``_SUCCESS`` is there, and the manifest's
    record count equals the log's count of valid records in the range (and cdr/'s row count).

    Raises ``ReplayVerificationError`` otherwise. A local output is read without
    Spark (plain files, Parquet footers); an ``hdfs://`` one through a Spark session.
    """
    s = runner.Settings.load()
    pub = published.open_range(
        s.output_root(output), range_id(start, end), lambda: runner.spark_session(s)
    )
    manifest = published.read_manifest(pub, MANIFEST)
    parquet_rows = pub.parquet_rows(CDR_DIR) if pub.exists(CDR_DIR) else None
    success = pub.exists(SUCCESS)
    if manifest is None and not success:
        msg = (
            f"there is no replay of [{iso(start)}, {iso(end)}) at {pub.url} "
            "(no manifest.json, no _SUCCESS)"
        )
        raise ReplayVerificationError(msg)
    the_plan = runner.plan_range(s, start, end)
    expected, source = verify.ledger_count(s.kafka, s.registry, the_plan)
    report = verify.check(
        manifest,
        success=success,
        plan=the_plan,
        expected=expected,
        source=source,
        parquet_rows=parquet_rows,
    )
    log.info(
        "replay verified from=%s to=%s records=%s source=%s",
        iso(start),
        iso(end),
        report.records,
        source,
    )
    return report


def interval_metrics(start: datetime, end: datetime, output: str | None = None) -> IntervalFigures:
    """Records, customers (distinct callers), towers and revenue of a replayed interval,
    from its manifest (read without Spark unless the output is on HDFS); also set as the
    Prometheus gauges of the last interval."""
    s = runner.Settings.load()
    root = s.output_root(output)
    pub = published.open_range(root, range_id(start, end), lambda: runner.spark_session(s))
    manifest = published.read_manifest(pub, MANIFEST)
    if manifest is None:
        msg = f"there is no replay of [{iso(start)}, {iso(end)}) under {root}"
        raise ReplayVerificationError(msg)
    summary = manifest.summary
    runner.record_interval(summary)
    out = IntervalFigures(
        start=manifest.range.start,
        end=manifest.range.end,
        records=summary.records,
        customers=summary.callers,
        towers=summary.towers,
        revenue=summary.revenue,
        currency=manifest.currency,
        run_id=manifest.run_id,
        path=manifest.path,
    )
    log.info(
        "interval metrics from=%s to=%s records=%s customers=%s towers=%s revenue=%s",
        out.start,
        out.end,
        out.records,
        out.customers,
        out.towers,
        out.revenue,
    )
    return out
