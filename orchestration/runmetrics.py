"""The replay DAG's run metrics, as a Prometheus text file.

Airflow tasks are short-lived processes, so they cannot hold a scrape endpoint.
The ``metrics`` task writes its figures to ``<metrics dir>/kappa_replay.prom``
(atomically: a temporary file renamed over the old one, under a lock), and
``kappa airflow metrics-exporter`` serves every ``*.prom`` file of that folder on
``/metrics``. node_exporter's textfile collector can read the same folder.

Exported (no labels unless said):

* ``kappa_replay_dag_interval_start_timestamp_seconds``,
  ``kappa_replay_dag_interval_end_timestamp_seconds``: the data interval of the
  last successful run;
* ``kappa_replay_dag_records``, ``..._customers``, ``..._towers``,
  ``..._revenue``: its figures; ``kappa_replay_dag_replay_duration_seconds``:
  how long its replay task took;
* ``kappa_replay_dag_last_success_timestamp_seconds``: when it finished;
* ``kappa_replay_dag_newest_interval_end_timestamp_seconds``: the newest
  interval end ever done (backfills of older intervals do not move it back), for
  the "interval not done by its deadline" alert;
* ``kappa_replay_dag_runs_succeeded_total``, ``kappa_replay_dag_task_failures_total{task}``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

FILE_NAME = "kappa_replay.prom"
PREFIX = "kappa_replay_dag_"

_GAUGES = {
    "interval_start_timestamp_seconds": "Start of the data interval of the last successful run",
    "interval_end_timestamp_seconds": "End of the data interval of the last successful run",
    "records": "CDRs in the interval of the last successful run",
    "customers": "Distinct callers in the interval of the last successful run",
    "towers": "Distinct towers in the interval of the last successful run",
    "revenue": "Revenue (rate card currency) of the interval of the last successful run",
    "replay_duration_seconds": "Seconds the replay task of the last successful run took",
    "last_success_timestamp_seconds": "When the last successful run finished",
    "newest_interval_end_timestamp_seconds": "Newest data interval end replayed successfully",
}
_SUCCEEDED = "runs_succeeded"
_FAILURES = "task_failures"


@dataclass(frozen=True)
class RunFigures:
    """What one successful run reports."""

    start: datetime
    end: datetime
    records: int
    customers: int
    towers: int
    revenue: float
    replay_seconds: float | None = None


@dataclass
class _State:
    gauges: dict[str, float]
    succeeded: float
    failures: dict[str, float]


def record_success(directory: Path, figures: RunFigures, now: datetime | None = None) -> Path:
    """Write the figures of a successful run; returns the file written."""
    done = (now or datetime.now(UTC)).timestamp()
    with _locked(directory) as state:
        newest = max(
            state.gauges.get("newest_interval_end_timestamp_seconds", 0.0), figures.end.timestamp()
        )
        state.gauges.update(
            {
                "interval_start_timestamp_seconds": figures.start.timestamp(),
                "interval_end_timestamp_seconds": figures.end.timestamp(),
                "records": float(figures.records),
                "customers": float(figures.customers),
                "towers": float(figures.towers),
                "revenue": float(figures.revenue),
                "last_success_timestamp_seconds": done,
                "newest_interval_end_timestamp_seconds": newest,
            }
        )
        if figures.replay_seconds is not None:
            state.gauges["replay_duration_seconds"] = figures.replay_seconds
        state.succeeded += 1
    return directory / FILE_NAME


def record_failure(directory: Path, task_id: str) -> Path:
    """Count a task that failed for good (its retries spent)."""
    with _locked(directory) as state:
        state.failures[task_id] = state.failures.get(task_id, 0.0) + 1
    return directory / FILE_NAME


def read_samples(directory: Path) -> dict[str, float]:
    """The samples of the file, ``name`` or ``name{label="v"}`` to value (for checks)."""
    path = directory / FILE_NAME
    out: dict[str, float] = {}
    if not path.exists():
        return out
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


class _Locked:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state = _State({}, 0.0, {})
        self._lock: int | None = None

    def __enter__(self) -> _State:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.directory / f".{FILE_NAME}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.state = _load(self.directory / FILE_NAME)
        return self.state

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                _write(self.directory / FILE_NAME, self.state)
        finally:
            if self._lock is not None:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                os.close(self._lock)


def _locked(directory: Path) -> _Locked:
    return _Locked(directory)


def _load(path: Path) -> _State:
    state = _State({}, 0.0, {})
    if not path.exists():
        return state
    try:
        families = list(text_string_to_metric_families(path.read_text(encoding="utf-8")))
    except ValueError:
        log.warning("unreadable metrics file, starting afresh path=%s", path)
        return state
    for family in families:
        for s in family.samples:
            name = s.name.removeprefix(PREFIX)
            if name in _GAUGES:
                state.gauges[name] = s.value
            elif name == f"{_SUCCEEDED}_total":
                state.succeeded = s.value
            elif name == f"{_FAILURES}_total" and "task" in s.labels:
                state.failures[s.labels["task"]] = s.value
    return state


class _StateCollector(Collector):
    def __init__(self, state: _State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        for name, doc in _GAUGES.items():
            if name in self.state.gauges:
                yield GaugeMetricFamily(PREFIX + name, doc, value=self.state.gauges[name])
        yield CounterMetricFamily(
            PREFIX + _SUCCEEDED,
            "Replay DAG runs whose metrics task finished",
            value=self.state.succeeded,
        )
        failures = CounterMetricFamily(
            PREFIX + _FAILURES,
            "Replay DAG tasks failed after their retries, by task",
            labels=["task"],
        )
        for task, value in sorted(self.state.failures.items()):
            failures.add_metric([task], value)
        yield failures


def _write(path: Path, state: _State) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector(state))
    text = generate_latest(registry)
    fd, tmp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TextfileCollector(Collector):
    """Serves every ``*.prom`` file of a folder, read afresh at each scrape."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.prom")):
            try:
                yield from text_string_to_metric_families(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("skipped metrics file path=%s error=%s", path, exc)
