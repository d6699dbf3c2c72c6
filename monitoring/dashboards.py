"""The Grafana dashboards, built as data: ``python -m monitoring.dashboards`` writes them.

``monitoring/grafana/dashboards/*.json`` is this module's output (a test keeps them in
sync, another checks that every metric they name is exported, and the end-to-end test
that every expression returns series from a running pipeline). Each dashboard has a
``datasource`` variable, so the JSON loads into any Grafana with a Prometheus data source.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parent / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
TAG = "telecom-kappa"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: Sequence[Query]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    description: str = ""
    stack: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: Sequence[Panel] = field(default_factory=tuple)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: Sequence[Row]


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def p95(histogram: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile(0.95, sum by ({group}) (rate({histogram}_bucket[{RATE}])))"


def ts(title: str, *queries: Query, **kw: Any) -> Panel:
    """A time-series panel."""
    return Panel(title, queries, **kw)


def stat(title: str, expr: str, unit: str = "short", width: int = 6, **kw: Any) -> Panel:
    """A single-value panel (the last value), a quarter of the width by default."""
    return Panel(title, (q(expr),), unit=unit, kind="stat", width=width, height=4, **kw)


def row(title: str, *panels: Panel) -> Row:
    return Row(title, panels)


# -- the dashboards -------------------------------------------------------------------

IN = f"sum(rate(kappa_validator_records_in_total[{RATE}]))"
VALID = f"sum(rate(kappa_validator_records_valid_total[{RATE}]))"
DEAD_LETTERED = f"{IN} - {VALID}"  # every record judged ends in cdr.valid or cdr.dlq
BY_RULE = f"sum by (rule) (rate(kappa_validator_records_dead_lettered_total[{RATE}]))"
WATERMARK = "max(kappa_aggregate_watermark_delay_seconds)"
NEWEST_REPLAYED = "max(kappa_replay_dag_newest_interval_end_timestamp_seconds)"

PIPELINE = Dashboard(
    uid="kappa-pipeline",
    title="telecom-kappa / Pipeline overview",
    description="Throughput per stage, lag, dead letters by rule, end-to-end delay.",
    rows=(
        row(
            "Last closed window",
            stat("Revenue", "kappa_business_window_revenue", description="rate-card currency"),
            stat("Active callers", "kappa_business_window_active_callers"),
            stat("Towers with low signal", "kappa_business_window_low_signal_towers"),
            stat("Targets up", "sum(up)", description="Processes Prometheus scrapes and reaches"),
        ),
        row(
            "Throughput",
            ts(
                "Records per second by stage",
                q(f"sum(rate(kappa_producer_records_total[{RATE}]))", "produced (cdr.raw)"),
                q(IN, "judged"),
                q(VALID, "valid (cdr.valid)"),
                q(DEAD_LETTERED, "dead-lettered (cdr.dlq)"),
                q(f"sum(rate(kappa_aggregate_input_rows_total[{RATE}]))", "aggregated"),
                q(
                    f"sum by (table) (rate(kappa_aggregate_window_rows_total[{RATE}]))",
                    "{{table}} window rows",
                ),
                unit="rps",
                width=24,
            ),
        ),
        row(
            "Lag and delay",
            ts(
                "Validator consumer lag by partition",
                q("sum by (partition) (kappa_validator_consumer_lag_records)", "{{partition}}"),
                stack=True,
                description="Alert KappaConsumerLagGrowing when it keeps rising",
            ),
            ts(
                "Aggregation: rows arriving vs processed",
                q("max(kappa_aggregate_input_rows_per_second)", "arriving"),
                q("max(kappa_aggregate_processed_rows_per_second)", "processed"),
                unit="rps",
                description="Processed below arriving, batch after batch: the query falls behind",
            ),
            ts(
                "End-to-end delay",
                q("max by (table) (kappa_business_window_emit_delay_seconds)", "{{table}} window"),
                q(WATERMARK, "watermark behind processing time"),
                q(p95("kappa_producer_delivery_latency_seconds"), "producer delivery p95"),
                unit="s",
                description="Event-time end of a window to its emission; processing time minus "
                "the watermark; the producer's delivery latency",
            ),
            ts(
                "Micro-batch duration (p95)",
                q(p95("kappa_validator_batch_seconds"), "validator"),
                q(p95("kappa_aggregate_batch_duration_seconds"), "aggregation"),
                unit="s",
            ),
        ),
        row(
            "Dead letters",
            ts(
                "Dead letters per second by rule",
                q(BY_RULE, "{{rule}}"),
                unit="rps",
                stack=True,
                width=24,
            ),
        ),
        row(
            "Six-hourly replay (Airflow DAG)",
            stat(
                "Newest interval replayed ended",
                f"time() - {NEWEST_REPLAYED}",
                unit="s",
                description="Alert KappaReplayIntervalOverdue above 8 h (next interval + 2 h)",
            ),
            stat("Last run: records", "max(kappa_replay_dag_records)"),
            stat("Last run: revenue", "max(kappa_replay_dag_revenue)"),
            stat(
                "Tasks failed after retries",
                "sum(kappa_replay_dag_task_failures_total) or vector(0)",
            ),
        ),
    ),
)

QUALITY = Dashboard(
    uid="kappa-quality",
    title="telecom-kappa / Data quality",
    description="What the validator judged, why records were dead-lettered, late data.",
    rows=(
        row(
            "Verdicts",
            ts(
                "Dead-letter share",
                q(f"({DEAD_LETTERED}) / {IN}", "dead-lettered / judged"),
                unit="percentunit",
                description="Alert KappaDeadLetterShareHigh above 5%",
            ),
            Panel(
                "Failed rules in the last hour",
                (
                    q(
                        "sum by (rule) (increase(kappa_validator_records_dead_lettered_total[1h]))",
                        "{{rule}}",
                    ),
                ),
                kind="stat",
            ),
            ts(
                "Faults injected by the producer, by kind",
                q(
                    f"sum by (kind) (rate(kappa_producer_faults_injected_total[{RATE}]))",
                    "{{kind}}",
                ),
                unit="rps",
                stack=True,
                description="What the validator should catch",
            ),
            ts("Dead letters per second by rule", q(BY_RULE, "{{rule}}"), unit="rps", stack=True),
        ),
        row(
            "Validator internals",
            ts(
                "Great Expectations and transaction time per batch (p95)",
                q(p95("kappa_validator_gx_seconds"), "GX suite"),
                q(p95("kappa_validator_transaction_seconds"), "Kafka transaction"),
                unit="s",
            ),
            ts("Records per micro-batch (p95)", q(p95("kappa_validator_batch_records"), "records")),
            ts(
                "Transactions aborted per second",
                q(f"sum(rate(kappa_validator_transactions_aborted_total[{RATE}]))", "aborted"),
                unit="rps",
            ),
            ts("Dedup state", q("sum(kappa_validator_dedup_keys)", "call_ids held")),
        ),
        row(
            "Late data",
            ts(
                "Late and unreadable records per second (aggregation)",
                q(f"sum(rate(kappa_aggregate_late_records_total[{RATE}]))", "captured late"),
                q(
                    f"sum(rate(kappa_aggregate_rows_dropped_by_watermark_total[{RATE}]))",
                    "late groups dropped by Spark's watermark",
                ),
                q(f"sum(rate(kappa_aggregate_undecodable_records_total[{RATE}]))", "undecodable"),
                unit="rps",
                description="The rows Spark's watermark drops are captured to late/ and "
                "cdr.late, never lost silently; Spark counts them per late (window, table, "
                "key) group (numRowsDroppedByWatermark), the capture per CDR",
            ),
            ts(
                "Watermark delay",
                q(WATERMARK, "processing time minus watermark"),
                unit="s",
                description="Alert KappaWatermarkDelayHigh above 20 minutes",
            ),
        ),
    ),
)

NETWORK = Dashboard(
    uid="kappa-network",
    title="telecom-kappa / Network health",
    description="Towers and signal in the last closed 5-minute window, and their trend.",
    rows=(
        row(
            "Last closed window",
            stat("Towers with low signal", "kappa_business_window_low_signal_towers"),
            stat("Towers reporting", "kappa_business_window_towers"),
            stat(
                "Low-signal share of events",
                "kappa_business_window_low_signal_ratio",
                unit="percentunit",
            ),
            stat("Mean signal (bars)", "kappa_business_window_average_signal_bars"),
        ),
        row(
            "Trend",
            ts(
                "Towers with low signal vs reporting",
                q("kappa_business_window_low_signal_towers", "low signal"),
                q("kappa_business_window_towers", "reporting"),
            ),
            ts(
                "Events per window by call type",
                q("sum by (call_type) (kappa_business_window_events)", "{{call_type}}"),
                stack=True,
            ),
            ts(
                "Revenue and active callers per window",
                q("kappa_business_window_revenue", "revenue"),
                q("kappa_business_window_active_callers", "active callers"),
            ),
            ts(
                "Spark state store rows (open windows per table and key)",
                q("sum by (operator) (kappa_aggregate_state_rows)", "{{operator}}"),
            ),
        ),
    ),
)

DASHBOARDS = (PIPELINE, QUALITY, NETWORK)


# -- rendering --------------------------------------------------------------------------


def render(board: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of ``board``."""
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": [TAG],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [_datasource_variable()]},
        "annotations": {"list": []},
        "links": [
            {"title": "telecom-kappa", "type": "dashboards", "tags": [TAG], "asDropdown": True}
        ],
        "panels": _Grid().place(board.rows),
    }


def _datasource_variable() -> dict[str, Any]:
    """The ``datasource`` variable every query names (``${datasource}``): it lets the
    JSON load into any Grafana with a Prometheus data source, whatever its uid."""
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


class _Grid:
    """Panel ids and positions on Grafana's 24-column grid, in the order of the rows.

    Grafana wants every panel, row headers included, in one flat list with a unique id
    and an explicit position. Each row starts with a full-width header one unit high;
    its panels fill a line left to right and wrap to the next line when the next one
    would pass the 24th column; a line is as high as its highest panel.
    """

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0
        self.next_id = 1

    def place(self, rows: Iterable[Row]) -> list[dict[str, Any]]:
        """The panels of ``rows``, each row's header first, placed."""
        for row in rows:
            self.panels.append(_row_header(row, self._id(), self.y))
            self.y += 1
            self._place_line_by_line(row.panels)
        return self.panels

    def _place_line_by_line(self, panels: Iterable[Panel]) -> None:
        x = 0
        line_height = 0
        for panel in panels:
            if x + panel.width > 24:
                x, self.y = 0, self.y + line_height
                line_height = 0
            self.panels.append(_panel(panel, self._id(), x, self.y))
            x += panel.width
            line_height = max(line_height, panel.height)
        self.y += line_height

    def _id(self) -> int:
        pid = self.next_id
        self.next_id += 1
        return pid


def _row_header(row: Row, pid: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "row",
        "title": row.title,
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
    }


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "range": panel.kind != "stat",
            "instant": panel.kind == "stat",
        }
        for i, query in enumerate(panel.queries)
    ]
    custom: dict[str, Any] = {}
    if panel.kind == "timeseries":
        custom = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
    options: dict[str, Any] = (
        {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
        if panel.kind == "timeseries"
        else {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
        }
    )
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit, "custom": custom}, "overrides": []},
        "options": options,
    }


def file_name(board: Dashboard) -> str:
    return f"{board.uid}.json"


def text(board: Dashboard) -> str:
    return json.dumps(render(board), indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = DASHBOARD_DIR, boards: Iterable[Dashboard] = DASHBOARDS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for board in boards:
        path = directory / file_name(board)
        path.write_text(text(board), encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":
    for written in write(Path(sys.argv[1]) if len(sys.argv) > 1 else DASHBOARD_DIR):
        sys.stdout.write(f"{written}\n")
