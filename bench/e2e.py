"""The whole pipeline as users run it: ``kappa produce``, ``kappa validate`` and
``kappa aggregate`` together, at a steady rate, and the highest rate at which no stage
falls behind.

    .venv/bin/python -m bench.e2e [--rate 2000] [--minutes 10] [--search] [--max-rate 64000]
        [--bisections 3]
        [--speed 10] [--seed 2026] [--keep]
    make bench-e2e                      # the same with the defaults: one trial at 2000/s

**A trial** at rate R for D minutes: fresh topics for raw, valid, dlq, billing, network
and late (the last three compacted, as the stack creates them), a fresh validator group
and transactional id, and a fresh output folder and checkpoint under a temporary folder.
``kappa validate`` and ``kappa aggregate`` (local Spark master, its default trigger and
settings) start as subprocesses with the default settings apart from those names and
their metrics ports (free ports, not the defaults). Once the validator logs its
partition assignment and the aggregation logs that its query started, ``kappa produce
--rate R --duration D --clock simulated --start T --speed S --json`` runs for D minutes.

**The clock.** With wall-clock event times the first 5-minute window would close only
15 minutes in (the window, then the 10-minute watermark), too late for a 10-minute
run. The producer therefore stamps events on its simulated clock, ``--speed`` (default
10) event seconds per wall second, starting at ``T = now - (speed - 1) * D - 5 min``:
its event time reaches ``now + D - 5 min`` when the run ends, so it never passes the
wall clock (the validator dead-letters events from the future). Record *i* carries
``T + i * speed / R`` and is sent at ``wall0 + i / R``, so

    event = T + speed * (wall - wall0)        wall = wall0 + (event - T) / speed

``wall0``, the producer's first send, is estimated from the samples: every sample with
*n* records delivered bounds it by ``wall - (n - 1) / R``; the smallest bound is taken.

**Every 5 s** (one progress line on stderr each) until the trial ends:

- producer: the records delivered (the raw topic's end offsets; an idempotent producer
  writes no transaction markers) against ``R * elapsed``; its lag is the difference;
- validator: the end offsets of the raw topic minus the validator group's committed
  offsets, plus the same over its internal repartition topic
  (``<raw>.by-call-id.<group>``): a record forwarded but not judged yet is still the
  validator's. Both are reported apart as well;
- aggregation: the end offsets of the valid topic a read_committed reader reaches (the
  last stable offset) minus the end offsets of the newest batch in the Spark
  checkpoint's commit log (``commits/<n>``, offsets from ``offsets/<n>``). The valid
  topic is written in transactions, so its offsets include a commit marker per
  transaction and partition: the lag is in offsets, a little above the records; the
  trial reports the marker share of the topic's offsets, by which the figure overstates;
- CPU seconds of each stage's process tree (psutil): the validator, the aggregation
  (the driver and its JVM), the producer (its exact figure from the kernel when it is
  reaped), and the stack's Kafka broker and Schema Registry JVMs ("kafka",
  "registry"), when their pids can be found. Per 1,000 CDRs they count the seconds
  from just before the producer starts to its end (for the producer, its whole
  process), divided by the records it delivered.

**Event-to-window delay**, for every window that closes during the run (its end plus
the 10-minute watermark reached by the producer's event time): the wall time it is
first seen in ``billing_realtime/`` (polled every second, new Parquet files only) and
on the billing topic (read_committed, decoded), minus the wall time at which the
producer's event time reached ``window_end + 10 min`` (the clock above, inverted).
That is the delay beyond the watermark's own wait: the trigger interval, the batch and
the sinks. p50, p99, max and count per place, in seconds.

**At the end** of a trial: the producer ends by itself after D; the bench waits
(bounded) until the validator has judged everything, the aggregation has read the valid
topic to its end and the windows have appeared; the ledger (every raw record in exactly
one of valid and dlq) must balance; the validator and the aggregation stop on SIGTERM
(bounded waits, then SIGKILL to the process group); the topics go.

**Flat**: see ``flatness``: over the second half of the production, the least-squares
slope of each stage's lag is below 2% of R (records per second), and each stage's lag
at the end of the production is below one minute of traffic (``R * 60``); a trial
whose ledger did not balance or whose processes died is not flat.

**Search** (``--search``): from ``--rate``, double while flat (up to ``--max-rate``),
then bisect between the last flat and the first non-flat rate until the bracket is
below 10% of the flat rate, at most three bisections (``next_rate``); should ``--rate``
itself not be flat, halve it first (at most three times). Without it, one trial at
``--rate``. A trial of a few minutes is dominated by the aggregation's first batch with
data (code generation, state store), which takes far longer than the later ones: judge
the flatness on trials of ten minutes.

Uses the stack at KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL when set, else starts
a local one on free ports (stopped at the end). Writes bench/results/e2e.json (every
trial, and the headline: the highest flat rate) and bench/results/e2e.png (lag and
delay over time of the highest flat trial and the first non-flat one). The machine
should be quiet: every stage shares its cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaException, TopicPartition

from bench.common import RESULTS, bench_stack, write_results
from kappa import clients
from kappa.settings import KafkaSettings, RegistrySettings, TopicSettings
from schemas.contract import SchemaName, register, schema_text, subject
from schemas.wire import Decoded, WireDecoder
from stack.net import free_ports
from stack.topics import compacted_topics, delete_topics, ensure_topics
from streams.validate.ledger import ledger
from streams.validate.repartition import topic_name
from tests.harness.proc import KappaProc as Proc
from tests.harness.stack import StackHandle

TOPIC_FIELDS = ("raw", "valid", "dlq", "billing", "network", "late")
STAGES = ("producer", "validator", "aggregation")
CPU_STAGES = ("producer", "validator", "aggregation", "kafka", "registry")
PLACES = ("parquet", "kafka")

SAMPLE_S = 5.0
WINDOW_MS = 5 * 60_000  # the aggregation's default window
WATERMARK_MS = 10 * 60_000  # and its default watermark
BEHIND_WALL = timedelta(minutes=5)  # event time's distance to the wall clock at the end
JITTER_MS = 5_000  # the generator's out-of-order jitter (event times up to 5 s early)
FLAT_SLOPE_SHARE = 0.02  # of R, records per second
FLAT_FINAL_S = 60.0  # seconds of traffic

ASSIGNED_S = 180.0  # the validator's partition assignment
QUERY_STARTED_S = 300.0  # the aggregation's query start (JVM, Spark session)
PRODUCER_GRACE_S = 120.0  # beyond D, for its start-up and final flush
VALIDATOR_CATCH_UP_S = 300.0
AGGREGATION_CATCH_UP_S = 180.0  # several 30-second triggers
WINDOWS_SEEN_S = 90.0
STOP_S = 120.0
STABLE_S = 3.0  # a residue of markers stays unchanged this long (batches run every 0.5 s)


# -- the pure parts ---------------------------------------------------------------------


def event_start(now: datetime, speed: float, duration_s: float) -> datetime:
    """The simulated clock's first event time: ``now - (speed - 1) * D - 5 min``, to the
    second, so that event time ends 5 minutes behind the wall clock."""
    start = now - timedelta(seconds=(speed - 1) * duration_s) - BEHIND_WALL
    return start.replace(microsecond=0)


def clock_origin(samples: Iterable[tuple[float, int]], rate: float) -> float | None:
    """``wall0``, the producer's first send, from ``(wall time, records delivered)``
    samples: record *i* is sent at ``wall0 + i / rate`` at the earliest, so a sample with
    ``n`` records delivered bounds ``wall0`` by ``wall - (n - 1) / rate``. The smallest
    bound; None without a sample that saw a record."""
    bounds = [wall - (n - 1) / rate for wall, n in samples if n > 0]
    return min(bounds) if bounds else None


def wall_at(event_ms: float, start_ms: float, speed: float, origin: float) -> float:
    """The wall time at which the producer's event time reached ``event_ms``:
    ``wall0 + (event - start) / speed``."""
    return origin + (event_ms - start_ms) / 1000.0 / speed


def last_event_ms(start_ms: int, speed: float, rate: float, delivered: int) -> int:
    """The event time of the last of ``delivered`` records on the simulated clock."""
    return start_ms + int(max(delivered - 1, 0) * 1000.0 * speed / rate)


def closing_windows(
    start_ms: int,
    last_ms: int,
    window_ms: int = WINDOW_MS,
    watermark_ms: int = WATERMARK_MS,
    jitter_ms: int = JITTER_MS,
) -> list[tuple[int, int]]:
    """The ``(window_start, window_end)`` of the windows holding events from ``start_ms``
    on that close while event time runs to ``last_ms``: their end plus the watermark at
    or before it, less the generator's jitter (the newest event may be that early)."""
    first = start_ms - start_ms % window_ms
    windows = []
    begin = first
    while begin + window_ms + watermark_ms <= last_ms - jitter_ms:
        windows.append((begin, begin + window_ms))
        begin += window_ms
    return windows


def window_delays(
    first_seen: Mapping[tuple[int, int], float],
    windows: Iterable[tuple[int, int]],
    start_ms: int,
    speed: float,
    origin: float,
    watermark_ms: int = WATERMARK_MS,
) -> list[tuple[float, float]]:
    """For each of ``windows`` seen: ``(wall time it closed, delay)``, the delay being the
    wall time it was first seen minus the wall time at which the producer's event time
    reached its end plus the watermark."""
    out = []
    for window in windows:
        seen = first_seen.get(window)
        if seen is None:
            continue
        closed = wall_at(window[1] + watermark_ms, start_ms, speed, origin)
        out.append((closed, seen - closed))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between the closest
    ranks (numpy's default)."""
    if not values:
        msg = "percentile of no values"
        raise ValueError(msg)
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def delay_summary(delays: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p99 and max of ``delays`` in seconds (None for no delay)."""
    if not delays:
        return {"count": 0, "p50_s": None, "p99_s": None, "max_s": None}
    return {
        "count": len(delays),
        "p50_s": round(percentile(delays, 50), 2),
        "p99_s": round(percentile(delays, 99), 2),
        "max_s": round(max(delays), 2),
    }


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of ``(x, y)`` points; None for fewer than two distinct x."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def flatness(
    lags: Mapping[str, Sequence[tuple[float, float]]],
    rate: float,
    duration_s: float,
    *,
    balanced: bool,
    problems: Sequence[str] = (),
) -> tuple[bool, list[str]]:
    """Whether every stage's lag stayed flat, and why not.

    ``lags`` holds, per stage, ``(seconds since the producer's first send, lag in
    records)`` for the samples taken while the producer ran. A trial is flat when, for
    every stage, over the second half of the production (``seconds >= duration_s / 2``)
    the least-squares slope of the lag is below ``FLAT_SLOPE_SHARE`` (2%) of ``rate``,
    in records per second, and the last lag is below ``rate * FLAT_FINAL_S`` (one minute
    of traffic). A trial whose ledger did not balance, or with ``problems`` (a process
    that died, a wait that timed out), is not flat. The reasons name each failed
    condition; flat trials have none.
    """
    reasons = list(problems)
    if not balanced:
        reasons.append("the ledger did not balance")
    for stage, points in lags.items():
        half = [(x, y) for x, y in points if x >= duration_s / 2]
        fitted = slope(half)
        if fitted is None:
            reasons.append(f"{stage}: fewer than two samples in the second half")
            continue
        if fitted >= FLAT_SLOPE_SHARE * rate:
            reasons.append(
                f"{stage}: lag grew {fitted:,.1f} records/s over the second half "
                f"(limit {FLAT_SLOPE_SHARE * rate:,.1f})"
            )
        final = half[-1][1]
        if final >= rate * FLAT_FINAL_S:
            reasons.append(
                f"{stage}: final lag {final:,.0f} records, a minute of traffic is "
                f"{rate * FLAT_FINAL_S:,.0f}"
            )
    return not reasons, reasons


def next_rate(
    history: Sequence[tuple[float, bool]],
    *,
    start: float,
    max_rate: float,
    tolerance: float = 0.1,
    max_bisections: int = 3,
    max_halvings: int = 3,
) -> float | None:
    """The next rate to try after ``history`` (``(rate, flat)`` in the order run), or
    None when the search is over.

    Start at ``start``; double while flat, up to ``max_rate`` (a flat ``max_rate`` ends
    it). Then bisect between the highest flat rate and the lowest non-flat rate above
    it, until that bracket is narrower than ``tolerance`` times the flat rate or after
    ``max_bisections`` bisections. Should ``start`` itself not be flat, halve (at most
    ``max_halvings`` times) until a rate is, then bisect the same way.
    """
    if not history:
        return start
    flats = [r for r, ok in history if ok]
    low = max(flats) if flats else None
    above = [r for r, ok in history if not ok and (low is None or r > low)]
    high = min(above) if above else None
    if low is None:
        assert high is not None
        return high / 2 if len(history) <= max_halvings else None
    if high is None:
        return min(low * 2, max_rate) if low < max_rate else None
    bracketed = next(
        i
        for i in range(len(history))
        if any(ok for _, ok in history[: i + 1]) and any(not ok for _, ok in history[: i + 1])
    )
    if len(history) - bracketed - 1 >= max_bisections or high - low < tolerance * low:
        return None
    return float(round((low + high) / 2))


def latest_commit(names: Iterable[str]) -> int | None:
    """The newest batch id in a Spark commit log's file names (``0``, ``1``, ...; hidden
    and temporary files skipped)."""
    ids = [int(n) for n in names if n.isdigit()]
    return max(ids) if ids else None


def batch_offsets(text: str, topic: str) -> dict[int, int]:
    """The end offsets of ``topic`` per partition in a Spark offset-log file: a version
    line, the batch's metadata as JSON, then one JSON object per source."""
    objects = [json.loads(line) for line in text.split("\n") if line.startswith("{")]
    return {int(p): int(o) for src in objects[1:] for p, o in src.get(topic, {}).items()}


def backlog(ends: Mapping[int, int], done: Mapping[int, int]) -> int:
    """Offsets from ``done`` (0 for a partition not in it) to ``ends``, over the
    partitions of ``ends``."""
    return sum(max(0, end - max(done.get(p, 0), 0)) for p, end in ends.items())


# -- processes ----------------------------------------------------------------------------


class TrialError(Exception):
    """A trial that could not go on: a process ended, a wait ran out."""


class CpuMeter:
    """CPU seconds (user + system) of process trees by stage. A process keeps its last
    reading once it is gone, so a tree's figure never drops."""

    def __init__(self) -> None:
        self.roots: dict[str, list[int]] = {}
        self._seen: dict[str, dict[tuple[int, float], float]] = {}

    def watch(self, stage: str, pid: int | None) -> None:
        if pid is not None:
            self.roots.setdefault(stage, []).append(pid)

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for stage, pids in self.roots.items():
            seen = self._seen.setdefault(stage, {})
            for pid in pids:
                try:
                    root = psutil.Process(pid)
                    tree = [root, *root.children(recursive=True)]
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                for proc in tree:
                    try:
                        with proc.oneshot():
                            times = proc.cpu_times()
                            key = (proc.pid, proc.create_time())
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                    seen[key] = float(times.user + times.system)
            out[stage] = sum(seen.values())
        return out


def listener_pid(port: int) -> int | None:
    """The pid listening on TCP ``port``, if this user may see it."""
    try:
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return int(conn.pid) if conn.pid else None
    except (psutil.AccessDenied, OSError):
        return None
    return None


def service_pids(stack: StackHandle) -> dict[str, int | None]:
    """The Kafka broker's and the Schema Registry's pids: from the stack's own pid files
    when the bench started it, else whoever listens on their ports."""
    if stack.local is not None:
        supervisor = stack.local.supervisor
        return {
            "kafka": supervisor.pid(stack.local.kafka.name),
            "registry": supervisor.pid(stack.local.registry.name),
        }
    first = stack.kafka.bootstrap.split(",")[0]
    kafka_port = int(first.rsplit(":", 1)[1]) if ":" in first else 9092
    registry_port = urlparse(stack.registry.url).port
    return {
        "kafka": listener_pid(kafka_port),
        "registry": listener_pid(registry_port) if registry_port else None,
    }


# -- Kafka and the checkpoint -------------------------------------------------------------


class Offsets:
    """End offsets (read_committed: the last stable offset) and the validator group's
    committed offsets, with one client that never joins the group."""

    def __init__(self, kafka: KafkaSettings, group: str) -> None:
        self._consumer: Consumer = clients.consumer(kafka, group)
        self._partitions: dict[str, list[int]] = {}

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return []
            self._partitions[topic] = sorted(meta.partitions)
        return self._partitions[topic]

    def ends(self, topic: str) -> dict[int, int]:
        return {
            p: int(self._consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1])
            for p in self.partitions(topic)
        }

    def committed(self, topic: str) -> dict[int, int]:
        parts = [TopicPartition(topic, p) for p in self.partitions(topic)]
        if not parts:
            return {}
        return {tp.partition: int(tp.offset) for tp in self._consumer.committed(parts, 10)}

    def close(self) -> None:
        self._consumer.close()


def checkpoint_offsets(checkpoint: Path, topic: str) -> dict[int, int]:
    """The end offsets of ``topic`` of the newest committed batch (none yet: empty)."""
    commits = checkpoint / "commits"
    newest = latest_commit(p.name for p in commits.iterdir()) if commits.is_dir() else None
    if newest is None:
        return {}
    try:
        return batch_offsets((checkpoint / "offsets" / str(newest)).read_text(), topic)
    except OSError:
        return {}


def _epoch_ms(column: Any) -> list[int]:
    """A pyarrow timestamp column as epoch milliseconds."""
    unit = column.type.unit
    values = column.cast(pa.int64()).to_pylist()
    scale = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}[unit]
    return [int(v * scale) for v in values]


class ParquetWatch(threading.Thread):
    """Polls a Parquet table folder every second; records the wall time each
    ``(window_start, window_end)`` (epoch ms) first appears. Reads only new files."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True, name="parquet-watch")
        self.folder = folder
        self.first_seen: dict[tuple[int, int], float] = {}
        self.stopping = threading.Event()
        self._read: set[str] = set()
        self.errors = 0
        self.failure: str | None = None

    def poll_once(self) -> None:
        if not self.folder.is_dir():
            return
        now = time.time()
        for path in sorted(self.folder.iterdir()):
            name = path.name
            if name in self._read or name.startswith(("_", ".")) or not name.endswith(".parquet"):
                continue
            try:
                table = pq.read_table(path, columns=["window_start", "window_end"])
            except (OSError, pa.ArrowException):
                self.errors += 1
                continue  # a file being replaced by a redone batch: the next poll
            self._read.add(name)
            starts = _epoch_ms(table.column("window_start"))
            ends = _epoch_ms(table.column("window_end"))
            for window in set(zip(starts, ends, strict=True)):
                self.first_seen.setdefault(window, now)

    def run(self) -> None:
        try:
            while not self.stopping.wait(1.0):
                self.poll_once()
        except Exception as exc:  # the trial goes on; its figures say what happened
            self.failure = f"{type(exc).__name__}: {exc}"


class KafkaWatch(threading.Thread):
    """Reads the billing topic (read_committed) from its start; records the wall time each
    ``(window_start, window_end)`` (epoch ms) first arrives."""

    def __init__(self, kafka: KafkaSettings, registry: RegistrySettings, topic: str) -> None:
        super().__init__(daemon=True, name="kafka-watch")
        self.kafka = kafka
        self.registry = registry
        self.topic = topic
        self.first_seen: dict[tuple[int, int], float] = {}
        self.stopping = threading.Event()
        self.rows = 0
        self.undecodable = 0
        self.failure: str | None = None

    def run(self) -> None:
        decoder = WireDecoder(clients.registry(self.registry), millis=True)
        consumer = clients.consumer(self.kafka, f"bench-e2e-watch-{uuid.uuid4().hex}")
        try:
            consumer.subscribe([self.topic])
            while not self.stopping.is_set():
                msgs = consumer.consume(10_000, 0.5)
                now = time.time()
                for msg in msgs:
                    if msg.error() is not None:
                        continue
                    got = decoder.decode(msg.value())
                    if not isinstance(got, Decoded):
                        self.undecodable += 1
                        continue
                    self.rows += 1
                    window = (int(got.record["window_start"]), int(got.record["window_end"]))
                    self.first_seen.setdefault(window, now)
        except Exception as exc:  # the trial goes on; its figures say what happened
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            consumer.close()


# -- one trial ------------------------------------------------------------------------------


@dataclass
class Sample:
    """What one sample saw; ``phase``: before, producing or draining."""

    wall: float
    phase: str
    delivered: int
    raw_lag: int
    internal_lag: int
    aggregation_lag: int
    cpu: dict[str, float]
    windows: dict[str, int]


def fresh_topics(kafka: KafkaSettings, tag: str) -> TopicSettings:
    """One new topic per pipeline topic, compacted where the stack compacts it."""
    names = {f: f"bench.e2e.{f}.{tag}" for f in TOPIC_FIELDS}
    topics = TopicSettings(**names)  # type: ignore[arg-type]
    ensure_topics(
        kafka,
        topics.all(),
        partitions=topics.partitions,
        retention_ms=topics.retention_ms,
        compacted=compacted_topics(topics),
    )
    return topics


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Trial:
    """One run of the pipeline at ``rate`` for ``minutes`` (see the module docstring)."""

    stack: StackHandle
    rate: float
    minutes: float
    speed: float
    seed: int
    work: Path
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.duration_s = self.minutes * 60.0
        self.tag = uuid.uuid4().hex[:8]
        self.group = f"bench-e2e-{self.tag}"
        self.folder = self.work / f"rate-{self.rate:.0f}-{self.tag}"
        self.folder.mkdir(parents=True)
        self.output = self.folder / "out"
        self.checkpoint = self.folder / "checkpoint"
        self.meter = CpuMeter()
        self.producer: Proc | None = None
        self.start_time: datetime | None = None
        self.began = time.time()
        self.watches: dict[str, ParquetWatch | KafkaWatch] = {}

    # -- environment -------------------------------------------------------------------
    def env(self, topics: TopicSettings) -> dict[str, str]:
        """The defaults, apart from the names of this trial and the metrics ports."""
        own = ("KAPPA_AGGREGATE_", "KAPPA_TOPIC_", "KAPPA_VALIDATOR_", "KAPPA_PRODUCER_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
        ports = free_ports(3)
        env.update(
            {
                "KAPPA_KAFKA_BOOTSTRAP": self.stack.kafka.bootstrap,
                "KAPPA_SCHEMA_REGISTRY_URL": self.stack.registry.url,
                "KAPPA_DEPS_DIR": str(self.stack.stack_settings.deps_dir),
                **{f"KAPPA_TOPIC_{f.upper()}": getattr(topics, f) for f in TOPIC_FIELDS},
                "KAPPA_VALIDATOR_GROUP_ID": self.group,
                "KAPPA_VALIDATOR_TRANSACTIONAL_ID": self.group,
                "KAPPA_AGGREGATE_OUTPUT": str(self.output),
                "KAPPA_AGGREGATE_CHECKPOINT_DIR": str(self.checkpoint),
                "KAPPA_PRODUCER_METRICS_PORT": str(ports[0]),
                "KAPPA_VALIDATOR_METRICS_PORT": str(ports[1]),
                "KAPPA_AGGREGATE_METRICS_PORT": str(ports[2]),
            }
        )
        if self.stack.stack_settings.java_home is not None:
            env["KAPPA_JAVA_HOME"] = str(self.stack.stack_settings.java_home)
        return env

    # -- sampling ----------------------------------------------------------------------
    def sample(self, phase: str, offsets: Offsets, topics: TopicSettings) -> Sample | None:
        internal = topic_name(topics.raw, self.group)
        try:
            raw_ends = offsets.ends(topics.raw)
            raw_lag = backlog(raw_ends, offsets.committed(topics.raw))
            internal_lag = backlog(offsets.ends(internal), offsets.committed(internal))
            valid_ends = offsets.ends(topics.valid)
        except KafkaException as exc:
            print(f"e2e: sample skipped: {exc}", file=sys.stderr, flush=True)
            return None
        got = Sample(
            wall=time.time(),
            phase=phase,
            delivered=sum(raw_ends.values()),
            raw_lag=raw_lag,
            internal_lag=internal_lag,
            aggregation_lag=backlog(valid_ends, checkpoint_offsets(self.checkpoint, topics.valid)),
            cpu=self.meter.read(),
            windows={p: len(w.first_seen) for p, w in self.watches.items()},
        )
        self.samples.append(got)
        origin = clock_origin(((s.wall, s.delivered) for s in self.samples), self.rate)
        elapsed = got.wall - origin if origin is not None else 0.0
        behind = max(0.0, self.rate * min(max(elapsed, 0.0), self.duration_s) - got.delivered)
        print(
            f"e2e R={self.rate:,.0f} {phase:<9} t={elapsed:6.0f} s  produced {got.delivered:,} "
            f"(behind {behind:,.0f})  validator lag {raw_lag + internal_lag:,}  "
            f"aggregation lag {got.aggregation_lag:,}  windows "
            f"parquet {got.windows.get('parquet', 0)} kafka {got.windows.get('kafka', 0)}",
            file=sys.stderr,
            flush=True,
        )
        return got

    def until(
        self,
        what: str,
        cond: Callable[[], bool],
        timeout: float,
        phase: str,
        offsets: Offsets,
        topics: TopicSettings,
        watch: Sequence[Proc],
    ) -> float | None:
        """Sample every ``SAMPLE_S`` until ``cond`` (checked every second); the seconds it
        took, or None (and a problem) when ``timeout`` ran out. A watched process that
        ends stops the trial."""
        began = time.time()
        next_sample = began
        while True:
            for proc in watch:
                if not proc.running:
                    msg = f"{proc.name} exited ({proc.poll()}) while waiting for {what}"
                    raise TrialError(f"{msg}\n{proc.tail()}")
            if cond():
                return time.time() - began
            now = time.time()
            if now - began > timeout:
                self.problems.append(f"no {what} within {timeout:.0f} s")
                return None
            if now >= next_sample:
                self.sample(phase, offsets, topics)
                next_sample += SAMPLE_S
            time.sleep(min(1.0, max(0.05, next_sample - time.time())))

    # -- the run -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        kafka, registry = self.stack.kafka, self.stack.registry
        topics = fresh_topics(kafka, self.tag)
        env = self.env(topics)
        validator = Proc("validate", ["validate"], env, self.folder)
        aggregation = Proc("aggregate", ["aggregate"], env, self.folder)
        procs = [validator, aggregation]
        offsets = Offsets(kafka, self.group)
        self.watches = {
            "parquet": ParquetWatch(self.output / "billing_realtime"),
            "kafka": KafkaWatch(kafka, registry, topics.billing),
        }
        for pid_stage, pid in service_pids(self.stack).items():
            self.meter.watch(pid_stage, pid)
        report: dict[str, Any] | None = None
        produced: dict[str, Any] = {}
        exits: dict[str, int | None] = {}
        valid_ends: dict[int, int] = {}
        internal_ends: dict[int, int] = {}
        try:
            # The validator registers it too (same id); registered first, the aggregation
            # starts with its decoder.
            register(clients.registry(registry), subject(topics.valid), schema_text(SchemaName.CDR))
            for proc in procs:
                proc.start()
            self.meter.watch("validator", validator.pid)
            self.meter.watch("aggregation", aggregation.pid)
            for name, cond, timeout in (
                ("validator assignment", lambda: "assigned topic=" in validator.text(), ASSIGNED_S),
                (
                    "aggregation query start",
                    lambda: "aggregate query started" in aggregation.text(),
                    QUERY_STARTED_S,
                ),
            ):
                if self.until(name, cond, timeout, "before", offsets, topics, procs) is None:
                    raise TrialError(self.problems[-1])
            for watch in self.watches.values():
                watch.start()
            produced = self.produce(env, offsets, topics, procs)
            self.drain(offsets, topics, procs, produced)
            report = ledger(
                kafka,
                registry,
                topics,
                start=datetime(2000, 1, 1, tzinfo=UTC),
                end=datetime(2100, 1, 1, tzinfo=UTC),
            ).as_dict()
            self.marks["ledger"] = time.time()
            valid_ends = offsets.ends(topics.valid)
            internal_ends = offsets.ends(topic_name(topics.raw, self.group))
            self.sample("draining", offsets, topics)
        except TrialError as exc:
            self.problems.append(str(exc))
        except (KafkaException, OSError, ValueError) as exc:
            self.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            for watch in self.watches.values():
                watch.stopping.set()
            for proc in procs:
                proc.send_term()
            deadline = time.monotonic() + STOP_S
            for proc in procs:
                code = proc.wait_or_kill(deadline - time.monotonic()) if proc.popen else None
                exits[proc.name] = code
            for proc in [*procs, *([self.producer] if self.producer else [])]:
                proc.kill()  # what is left of each group (a JVM)
            for watch in self.watches.values():
                if watch.is_alive():
                    watch.join(15)
                if watch.failure:
                    self.problems.append(f"{watch.name}: {watch.failure}")
            offsets.close()
            with contextlib.suppress(KafkaException):
                delete_topics(kafka, [*topics.all(), topic_name(topics.raw, self.group)])
        for proc in procs:
            code = exits.get(proc.name)
            if proc.popen is not None and code != 0:
                state = "did not stop" if code is None else f"exited with {code}"
                self.problems.append(f"{proc.name} {state} on SIGTERM within {STOP_S:.0f} s")
        return self.figures(topics, produced, report, exits, valid_ends, internal_ends)

    def produce(
        self, env: dict[str, str], offsets: Offsets, topics: TopicSettings, procs: Sequence[Proc]
    ) -> dict[str, Any]:
        """The producer's D minutes, sampled; its ``--json`` summary."""
        self.sample("before", offsets, topics)
        self.start_time = event_start(datetime.now(UTC), self.speed, self.duration_s)
        producer = Proc(
            "produce",
            [
                "produce",
                *("--rate", f"{self.rate:g}", "--duration", f"{self.duration_s:g}"),
                *("--seed", str(self.seed), "--clock", "simulated"),
                *("--start", iso(self.start_time), "--speed", f"{self.speed:g}", "--json"),
            ],
            env,
            self.folder,
        )
        self.producer = producer
        producer.start()
        self.meter.watch("producer", producer.pid)
        self.marks["producer started"] = producer.started
        took = self.until(
            "producer end",
            lambda: producer.poll() is not None,
            self.duration_s + PRODUCER_GRACE_S,
            "producing",
            offsets,
            topics,
            procs,
        )
        if took is None:
            producer.kill()
        self.marks["producer ended"] = time.time()
        self.sample("producing", offsets, topics)  # the end of the production
        if producer.poll() != 0:
            self.problems.append(f"produce exited with {producer.poll()}\n{producer.tail()}")
        lines = [ln for ln in producer.stdout().splitlines() if ln.startswith("{")]
        return dict(json.loads(lines[-1])) if lines else {}

    def drain(
        self,
        offsets: Offsets,
        topics: TopicSettings,
        procs: Sequence[Proc],
        produced: Mapping[str, Any],
    ) -> None:
        """Bounded waits: the validator caught up, the aggregation at the valid topic's
        end, the closing windows seen in both places."""
        internal = topic_name(topics.raw, self.group)
        steady: dict[str, Any] = {"lag": None, "since": 0.0}

        def validated() -> bool:
            try:
                raw = backlog(offsets.ends(topics.raw), offsets.committed(topics.raw))
                parts = len(offsets.partitions(internal))
                rest = backlog(offsets.ends(internal), offsets.committed(internal))
            except KafkaException:
                return False
            # At most one transaction marker per internal partition may stay behind the
            # committed offsets; a record would be judged within half a second.
            now = time.time()
            if raw or rest > parts:
                steady.update(lag=None, since=now)
                return False
            if steady["lag"] != rest:
                steady.update(lag=rest, since=now)
            return bool(now - steady["since"] >= STABLE_S)

        def aggregated() -> bool:
            try:
                ends = offsets.ends(topics.valid)
            except KafkaException:
                return False
            return bool(ends) and checkpoint_offsets(self.checkpoint, topics.valid) == ends

        delivered = int(produced.get("delivered", 0))
        assert self.start_time is not None
        start_ms = int(self.start_time.timestamp() * 1000)
        expected = closing_windows(
            start_ms, last_event_ms(start_ms, self.speed, self.rate, delivered)
        )

        def windows_seen() -> bool:
            return all(
                all(w in watch.first_seen for w in expected) for watch in self.watches.values()
            )

        for mark, what, cond, timeout in (
            ("validator caught up", "validator catching up", validated, VALIDATOR_CATCH_UP_S),
            (
                "aggregation caught up",
                "aggregation reaching the valid topic's end",
                aggregated,
                AGGREGATION_CATCH_UP_S,
            ),
            ("windows seen", "closing windows in both places", windows_seen, WINDOWS_SEEN_S),
        ):
            took = self.until(what, cond, timeout, "draining", offsets, topics, procs)
            if took is not None:
                self.marks[mark] = time.time()

    # -- figures -------------------------------------------------------------------------
    def figures(
        self,
        topics: TopicSettings,
        produced: Mapping[str, Any],
        report: Mapping[str, Any] | None,
        exits: Mapping[str, int | None],
        valid_ends: Mapping[int, int],
        internal_ends: Mapping[int, int],
    ) -> dict[str, Any]:
        rate, duration = self.rate, self.duration_s
        origin = clock_origin(((s.wall, s.delivered) for s in self.samples), rate)
        base = origin if origin is not None else self.marks.get("producer started", self.began)
        run = [s for s in self.samples if s.phase != "before"]

        def lag_of(s: Sample) -> dict[str, float]:
            elapsed = s.wall - base
            expected = rate * min(max(elapsed, 0.0), duration)
            return {
                "producer": max(0.0, expected - s.delivered),
                "validator": float(s.raw_lag + s.internal_lag),
                "aggregation": float(s.aggregation_lag),
            }

        producing = [s for s in run if s.phase == "producing"]
        lags = {stage: [(s.wall - base, lag_of(s)[stage]) for s in producing] for stage in STAGES}
        balanced = bool(report and report.get("balanced"))
        problems = list(self.problems)
        if origin is None:
            problems.append("the producer delivered nothing")
        flat, why = flatness(lags, rate, duration, balanced=balanced, problems=problems)

        slopes = {
            stage: slope([(x, y) for x, y in pts if x >= duration / 2])
            for stage, pts in lags.items()
        }
        finals = {stage: pts[-1][1] if pts else None for stage, pts in lags.items()}

        delays: dict[str, Any] = {}
        series: dict[str, list[list[float]]] = {}
        expected_windows: list[tuple[int, int]] = []
        if self.start_time is not None and origin is not None:
            start_ms = int(self.start_time.timestamp() * 1000)
            last = last_event_ms(start_ms, self.speed, rate, int(produced.get("delivered", 0)))
            expected_windows = closing_windows(start_ms, last)
            for place, watch in self.watches.items():
                got = window_delays(
                    watch.first_seen, expected_windows, start_ms, self.speed, origin
                )
                delays[place] = {
                    **delay_summary([d for _, d in got]),
                    "windows_closing": len(expected_windows),
                    "missing": len(expected_windows) - len(got),
                }
                series[place] = [[round(c - base, 2), round(d, 2)] for c, d in got]

        # from just before the producer starts (the start-ups of the validator and the
        # aggregation not included) to its end; the producer's figure is its whole process
        before = next((s for s in reversed(self.samples) if s.phase == "before"), None)
        end = producing[-1] if producing else None
        cpu: dict[str, float | None] = {}
        for stage in CPU_STAGES:
            if stage == "producer":
                exact = self.producer.exit_cpu_s if self.producer else None
                last_seen = end.cpu.get(stage) if end else None
                cpu[stage] = exact if exact is not None else last_seen
            elif before is not None and end is not None and stage in end.cpu:
                cpu[stage] = end.cpu[stage] - before.cpu.get(stage, 0.0)
            else:
                cpu[stage] = None
        delivered = int(produced.get("delivered", 0))
        per_k = {
            stage: (round(v / delivered * 1000, 4) if v is not None and delivered else None)
            for stage, v in cpu.items()
        }
        totals = dict(self.samples[-1].cpu) if self.samples else {}
        if self.producer is not None and self.producer.exit_cpu_s is not None:
            totals["producer"] = self.producer.exit_cpu_s

        records = report or {}
        valid_offsets = sum(valid_ends.values())
        internal_offsets = sum(internal_ends.values())
        markers = {
            "valid_topic_offsets": valid_offsets,
            "valid_records": records.get("valid"),
            "valid_non_record_offsets": (
                valid_offsets - records["valid"] if "valid" in records else None
            ),
            "valid_non_record_share": (
                round((valid_offsets - records["valid"]) / valid_offsets, 5)
                if "valid" in records and valid_offsets
                else None
            ),
            "internal_topic_offsets": internal_offsets,
            "internal_non_record_offsets": (
                internal_offsets - records["raw"] if "raw" in records else None
            ),
            "note": (
                "offsets that are not committed records: transaction commit markers (and "
                "aborted writes, if any). The aggregation and validator lags count offsets, "
                "so they overstate the records by about this share; after the drain the "
                "aggregation's residue is 0 (Spark reads to the last stable offset, "
                "markers included), the validator's internal topic may keep one marker "
                "per partition behind its committed offsets"
            ),
        }

        def marked(name: str) -> float | None:
            at = self.marks.get(name)
            ended = self.marks.get("producer ended")
            return round(at - ended, 1) if at is not None and ended is not None else None

        return {
            "rate": rate,
            "minutes": self.minutes,
            "flat": flat,
            "why_not_flat": why,
            "speed": self.speed,
            "seed": self.seed,
            "event_start": iso(self.start_time) if self.start_time else None,
            "seconds": round(time.time() - self.began, 1),
            "producer": {
                **produced,
                "clock_origin_vs_process_start_s": (
                    round(origin - self.marks["producer started"], 2)
                    if origin is not None and "producer started" in self.marks
                    else None
                ),
            },
            "slope_records_per_s": {
                k: round(v, 2) if v is not None else None for k, v in slopes.items()
            },
            "final_lag": {k: round(v) if v is not None else None for k, v in finals.items()},
            "lag": {
                "elapsed_s": [round(s.wall - base, 1) for s in run],
                "phase": [s.phase for s in run],
                "delivered": [s.delivered for s in run],
                **{stage: [round(lag_of(s)[stage]) for s in run] for stage in STAGES},
                "validator_raw": [s.raw_lag for s in run],
                "validator_internal": [s.internal_lag for s in run],
            },
            "delay": delays,
            "delay_series": series,
            "drain_seconds_after_producer": {
                "validator_caught_up": marked("validator caught up"),
                "aggregation_caught_up": marked("aggregation caught up"),
                "windows_seen": marked("windows seen"),
                "ledger": marked("ledger"),
            },
            "cpu_seconds_while_producing": {
                k: round(v, 2) if v is not None else None for k, v in cpu.items()
            },
            "cpu_seconds_per_1000_cdrs": per_k,
            "cpu_seconds_whole_trial": {k: round(v, 2) for k, v in totals.items()},
            "ledger": dict(report) if report is not None else None,
            "offsets_not_records": markers,
            "exit_codes": dict(exits),
            "kafka_watch": {
                "rows": getattr(self.watches.get("kafka"), "rows", None),
                "undecodable": getattr(self.watches.get("kafka"), "undecodable", None),
            },
        }


# -- the plot --------------------------------------------------------------------------------


def plot(trials: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Lag over time (one line per stage) and delay over time (one line per place), one
    column per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(trials), figsize=(7 * len(trials), 8), squeeze=False)
    for col, trial in enumerate(trials):
        lag, top, bottom = trial["lag"], axes[0][col], axes[1][col]
        for stage in STAGES:
            top.plot(lag["elapsed_s"], lag[stage], label=stage)
        end = trial["minutes"] * 60
        state = "flat" if trial["flat"] else "not flat"
        top.axvline(end, color="grey", linestyle="--", linewidth=0.8, label="producer ends")
        top.set_title(f"R = {trial['rate']:,.0f} CDR/s, {trial['minutes']:g} min ({state})")
        top.set_xlabel("seconds since the producer's first send")
        top.set_ylabel("lag (records)")
        top.legend()
        for place in PLACES:
            points = trial["delay_series"].get(place, [])
            bottom.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=place)
        if not any(trial["delay_series"].get(place) for place in PLACES):
            bottom.text(
                0.5, 0.5, "no window closed during the run", transform=bottom.transAxes, ha="center"
            )
        bottom.axvline(end, color="grey", linestyle="--", linewidth=0.8)
        bottom.set_xlim(top.get_xlim())
        bottom.set_xlabel("seconds since the producer's first send (the window closed)")
        bottom.set_ylabel("delay beyond the watermark (s)")
        bottom.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plotted(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The highest flat trial and the first non-flat one, those that exist."""
    flat = [t for t in trials if t["flat"]]
    out: list[Mapping[str, Any]] = []
    if flat:
        out.append(max(flat, key=lambda t: t["rate"]))
    first_not = next((t for t in trials if not t["flat"]), None)
    if first_not is not None:
        out.append(first_not)
    return out


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="CDRs per second (default 2000)")
    ap.add_argument("--minutes", type=float, default=10.0, help="D, minutes per trial")
    ap.add_argument("--search", action="store_true", help="find the highest flat rate")
    ap.add_argument("--max-rate", type=float, default=64000.0, help="the search's ceiling")
    ap.add_argument(
        "--bisections", type=int, default=3, help="the search's bisections at most (default 3)"
    )
    ap.add_argument("--speed", type=float, default=10.0, help="event seconds per wall second")
    ap.add_argument("--seed", type=int, default=2026, help="the producer's seed")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kappa-bench-e2e-"))
    began = time.time()
    trials: list[dict[str, Any]] = []
    try:
        with bench_stack() as stack:
            history: list[tuple[float, bool]] = []
            while True:
                rate = (
                    next_rate(
                        history,
                        start=args.rate,
                        max_rate=args.max_rate,
                        max_bisections=args.bisections,
                    )
                    if args.search
                    else (None if history else args.rate)
                )
                if rate is None:
                    break
                print(f"e2e: trial at {rate:,.0f} CDR/s for {args.minutes:g} min", flush=True)
                trial = Trial(stack, rate, args.minutes, args.speed, args.seed, work).run()
                trials.append(trial)
                history.append((rate, trial["flat"]))
                verdict = (
                    "flat"
                    if trial["flat"]
                    else "not flat: " + "; ".join(r.splitlines()[0] for r in trial["why_not_flat"])
                )
                print(f"e2e: {rate:,.0f} CDR/s {verdict} ({trial['seconds']:.0f} s)", flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    flat = [t["rate"] for t in trials if t["flat"]]
    shown = plotted(trials)
    png = RESULTS / "e2e.png"
    if shown:
        plot(shown, png)
    write_results(
        "e2e",
        {
            "headline": {
                "highest_flat_rate": max(flat) if flat else None,
                "minutes": args.minutes,
                "search": args.search,
                "rates_tried": [t["rate"] for t in trials],
            },
            "measured": (
                "kappa produce (simulated clock), kappa validate and kappa aggregate together "
                "at a steady rate; lag per stage every 5 s; flat: over the second half the "
                "least-squares slope of each lag below 2% of R per second and each final lag "
                "below R * 60, the ledger balanced and no process died; delay: first seen "
                "minus the wall time the producer's event time reached window_end + 10 min"
            ),
            "settings": {
                "speed": args.speed,
                "seed": args.seed,
                "max_rate": args.max_rate,
                "max_bisections": args.bisections,
                "sample_seconds": SAMPLE_S,
                "aggregate": "kappa aggregate, default settings (local master, 30 s trigger)",
                "validate": "kappa validate, default settings",
                "partitions": TopicSettings().partitions,
            },
            "plot": str(png) if shown else None,
            "plotted_rates": [t["rate"] for t in shown],
            "bench_seconds": round(time.time() - began, 1),
            "trials": trials,
        },
    )


if __name__ == "__main__":
    main()
