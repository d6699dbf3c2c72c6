"""Thin entry points for orchestration (Airflow tasks): one call per step of an interval.

Each reads the settings itself (they are entry points), reuses the process's
SparkSession if one runs, and returns plain JSON-able dicts (XCom-friendly).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from replay import job, runner, verify
from replay.exceptions import ReplayVerificationError
from replay.fs import HadoopFs, join
from replay.plan import iso, range_id

log = logging.getLogger(__name__)


def replay_interval(start: datetime, end: datetime, output: str | None = None) -> dict[str, Any]:
    """Replay ``[start, end)`` of cdr.valid to ``output`` (default: the settings'); the manifest."""
    s = runner.Settings.load()
    return runner.replay_range(s, start, end, output=output)


def verify_interval(start: datetime, end: datetime, output: str | None = None) -> dict[str, Any]:
    """Check the published replay of ``[start, end)``: ``_SUCCESS`` is there, and the manifest's
    record count equals the log's count of valid records in the range (and cdr/'s row count).

    Raises ``ReplayVerificationError`` otherwise.
    """
    s = runner.Settings.load()
    root = s.output_root(output)
    spark = runner.spark_session(s)
    fs = HadoopFs(spark, root)
    folder = join(fs.root, range_id(start, end))
    manifest: dict[str, Any] | None = None
    parquet_rows: int | None = None
    if fs.exists(join(folder, job.MANIFEST)):
        manifest = job.read_manifest(spark, root, range_id(start, end))
    if fs.exists(join(folder, job.CDR_DIR)):
        parquet_rows = spark.read.parquet(join(folder, job.CDR_DIR)).count()
    success = fs.exists(join(folder, job.SUCCESS))
    if manifest is None and not success:
        msg = (
            f"there is no replay of [{iso(start)}, {iso(end)}) at {folder} "
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
        report["records"],
        source,
    )
    return report


def interval_metrics(start: datetime, end: datetime, output: str | None = None) -> dict[str, Any]:
    """Records, customers (distinct callers), towers and revenue of a replayed interval,
    from its manifest; also set as the Prometheus gauges of the last interval."""
    s = runner.Settings.load()
    root = s.output_root(output)
    spark = runner.spark_session(s)
    try:
        manifest = job.read_manifest(spark, root, range_id(start, end))
    except FileNotFoundError as exc:
        msg = f"there is no replay of [{iso(start)}, {iso(end)}) under {root}"
        raise ReplayVerificationError(msg) from exc
    summary = manifest["summary"]
    runner.record_interval(summary)
    out = {
        "from": manifest["range"]["from"],
        "to": manifest["range"]["to"],
        "records": int(summary["records"]),
        "customers": int(summary["callers"]),
        "towers": int(summary["towers"]),
        "revenue": float(summary["revenue"]),
        "currency": manifest["aggregation"]["rates"]["currency"],
        "run_id": manifest["run_id"],
        "path": manifest["path"],
    }
    log.info(
        "interval metrics from=%s to=%s records=%s customers=%s towers=%s revenue=%s",
        out["from"],
        out["to"],
        out["records"],
        out["customers"],
        out["towers"],
        out["revenue"],
    )
    return out
