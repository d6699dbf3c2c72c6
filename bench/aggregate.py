"""Benchmark of the aggregation as a user meets it: ``kappa aggregate --available-now``, cold.

    .venv/bin/python -m bench.aggregate [--sizes 1000000,5000000] [--seed 7] [--keep]

Per size (default 1M and 5M CDRs), a fresh ``cdr.valid``-like topic (3 partitions)
is loaded with valid CDRs (``CdrLoader``, deterministic for a ``--seed``), 2 ms of
event time apart, the message timestamp being the event time; about 1% of them are
late, their event time 30 minutes behind the running clock. The load is timed on
its own. Then, each in a fresh process (JVM and Spark start-up included), job
first, then plain:

- ``job``: ``.venv/bin/kappa aggregate --available-now`` with the default settings
  (RocksDB state store, the whole backlog in one micro-batch), its own fresh
  billing, network (compacted) and late topics, output and checkpoint in a
  temporary folder: decode, billing and tower windows, the late capture, Parquet
  and Kafka sinks and the gauges, then the closing summary;
- ``plain``: ``python -m bench.plain_aggregate``, the documented Spark query with
  the same session, read options, decoding and state store: per table one query,
  ``withWatermark`` and ``groupBy(window(event_time), key).agg(...)`` to Parquet in
  append mode, Spark's ``availableNow`` trigger (as the job's);
- ``floor`` (cold series only): ``python -m bench.plain_aggregate --read-only``,
  the same session reading the topic and decoding every value into Spark's
  ``noop`` sink, nothing else: what any query over the topic pays on this machine
  before it aggregates anything. Its figure is the seconds from the process start
  to the query's end.
- ``bare`` (cold series only): ``python -m bench.plain_aggregate --bare``, the
  guide's example at its smallest (one ``from_avro``, billing sums, per tower
  only counts and the average: no set of callers, so not the job's rows): the
  fastest windowed query of this shape this machine runs, a reference for the
  absolute rate.

Measured, as wall time from just before the process is started (``time.time()``):
**seconds to the last window written**, the newest modification time of the
Parquet files with rows under ``billing_realtime/`` and ``network_realtime/``;
also the process's exit. CDR/s is records / seconds to the last window. The window
rows of both tables (and the job's ``late/`` rows) are read back from the Parquet
footers with pyarrow; the two must write as many window rows per table (a
warning in the JSON if not). As for a user, the windows of the newest 10-15
minutes of event time stay open (the watermark has not passed them) and are not
written: a size below about 1M (33 minutes of event time) closes few windows
besides those of the late CDRs, so its figure says little.

The aim: on 5M, job/plain <= 1.15 and >= 150k CDR/s; the floor and the bare query
say whether the rate is within this machine's reach at all. Spark judges a batch's
rows against the previous batch's watermark, so a backlog drained in one
micro-batch has no late rows to drop; the extra ``batched`` run (on by default,
``--no-batched`` skips it) drains the same topic again, job and plain, with
``KAPPA_AGGREGATE_MAX_OFFSETS_PER_TRIGGER`` = records / 5, so the watermark drops
late rows and the job's late capture has work, its cost in that figure.

Uses the stack at KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL when set,
else starts a local one on free ports. Writes bench/results/aggregate.json:
the cold-start figures first, then labelled extras and the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.common import RESULTS, CdrLoader, bench_stack
from kappa.progress import ProgressLine
from kappa.settings import AggregateSettings, KafkaSettings, RegistrySettings, TopicSettings
from stack.topics import compacted_topics, delete_topics, ensure_topics
from streams.aggregate.tables import TABLES
from tests.harness.stack import StackHandle

PROJECT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(milliseconds=2)
LATE_SHARE = 0.01
LATE_BY = timedelta(minutes=30)
PARTITIONS = 3
AIM_RECORDS = 5_000_000
AIM_RATIO = 1.15
AIM_CDR_PER_S = 150_000
BATCHES = 5
ORDER = (
    "per size: job, then plain, then floor, then bare, each a fresh process; "
    "then the batched extra, job then plain"
)
SUMMARY_RE = re.compile(
    r"([\d,]+) micro-batches: ([\d,]+) billing rows, ([\d,]+) tower rows, "
    r"([\d,]+) late CDRs captured, ([\d,]+) undecodable"
)


@dataclass(frozen=True)
class Loaded:
    records: int
    late: int
    seconds: float


def load(kafka: KafkaSettings, registry: RegistrySettings, topic: str, n: int, seed: int) -> Loaded:
    """``n`` valid CDRs 2 ms apart, about 1% of them 30 minutes late."""
    loader = CdrLoader(kafka, registry, topic)
    rnd = random.Random(seed)
    types = ("VOICE",) * 6 + ("SMS",) * 3 + ("DATA",)
    late = 0
    began = time.perf_counter()
    with ProgressLine("loaded", n, unit="CDRs") as line:
        for i in range(n):
            t = T0 + STEP * i
            if rnd.random() < LATE_SHARE:
                t -= LATE_BY
                late += 1
            call_type = types[rnd.randrange(10)]
            rec = {
                "call_id": f"{i:012d}",
                "caller_num": f"+9477{rnd.randrange(5000):07d}",
                "callee_num": f"+9477{rnd.randrange(5000):07d}",
                "call_type": call_type,
                "duration_sec": 0 if call_type == "SMS" else rnd.randrange(1, 600),
                "event_time": t,
                "tower_id": f"TWR-{rnd.randrange(50):04d}",
                "signal_strength": rnd.randrange(1, 6),
                "data_volume_kb": rnd.randrange(1, 50_000) if call_type == "DATA" else 0,
            }
            loader.send(rec, int(t.timestamp() * 1000))
            if not i & 4095:
                line.update(i + 1)
    loader.flush()
    return Loaded(n, late, time.perf_counter() - began)


@dataclass(frozen=True)
class Written:
    """What a Parquet table holds: rows, files with rows, the newest one's mtime."""

    rows: int
    files: int
    newest: float | None


def written(folder: Path) -> Written:
    """The Parquet files with rows under ``folder`` (not ``_spark_metadata`` and the like)."""
    rows, files, newest = 0, 0, None
    for path in folder.rglob("*.parquet") if folder.is_dir() else ():
        if any(p.startswith(("_", ".")) for p in path.relative_to(folder).parts):
            continue
        n = pq.read_metadata(path).num_rows
        if n:
            rows += n
            files += 1
            mtime = path.stat().st_mtime
            newest = mtime if newest is None else max(newest, mtime)
    return Written(rows, files, newest)


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@dataclass
class Run:
    """One cold process: when it started, exited, and what it wrote."""

    name: str
    returncode: int | None
    started: float
    exited: float
    folder: Path
    load_average_1m_before: float

    def stderr_tail(self) -> str:
        return _tail(self.folder / "stderr.txt")

    def stdout(self) -> str:
        return _tail(self.folder / "stdout.txt", 100_000)


def run_cold(name: str, cmd: list[str], env: dict[str, str], folder: Path, timeout_s: float) -> Run:
    """``cmd`` in a fresh process (its own process group), stdout/stderr to files."""
    folder.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with (folder / "stdout.txt").open("wb") as out, (folder / "stderr.txt").open("wb") as err:
        started = time.time()
        proc = subprocess.Popen(
            cmd, env=env, cwd=PROJECT, stdout=out, stderr=err, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        exited = time.time()
    run = Run(name, code, started, exited, folder, round(load_before, 2))
    state = "timed out" if code is None else f"exit {code}"
    print(f"  {name}: {state} after {exited - started:.1f} s", flush=True)
    if code != 0:
        sys.stderr.write(run.stderr_tail())
    return run


@dataclass(frozen=True)
class Topics:
    valid: str
    billing: str
    network: str
    late: str

    @classmethod
    def fresh(cls) -> Topics:
        suffix = uuid.uuid4().hex[:8]
        return cls(
            f"bench.valid.{suffix}",
            f"bench.billing.{suffix}",
            f"bench.network.{suffix}",
            f"bench.late.{suffix}",
        )

    def outputs(self) -> list[str]:
        return [self.billing, self.network, self.late]

    def create(self, kafka: KafkaSettings) -> None:
        settings = TopicSettings(
            valid=self.valid, billing=self.billing, network=self.network, late=self.late
        )
        ensure_topics(
            kafka,
            [self.valid, *self.outputs()],
            partitions=PARTITIONS,
            retention_ms=-1,
            compacted=compacted_topics(settings),
        )

    def delete(self, kafka: KafkaSettings) -> None:
        delete_topics(kafka, [self.valid, *self.outputs()])


def child_env(stack: StackHandle, topics: Topics, extra: dict[str, str]) -> dict[str, str]:
    """The environment of both processes: the stack, the topics, otherwise the defaults."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAPPA_AGGREGATE_", "KAPPA_TOPIC_"))
    }
    env.update(
        {
            "KAPPA_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
            "KAPPA_SCHEMA_REGISTRY_URL": stack.registry.url,
            "KAPPA_TOPIC_VALID": topics.valid,
            "KAPPA_TOPIC_BILLING": topics.billing,
            "KAPPA_TOPIC_NETWORK": topics.network,
            "KAPPA_TOPIC_LATE": topics.late,
            "KAPPA_AGGREGATE_METRICS_PORT": "0",
            **extra,
        }
    )
    return env


def _seconds(run: Run, newest: float | None) -> float | None:
    return None if newest is None else round(newest - run.started, 2)


def _per_s(records: int, seconds: float | None) -> float | None:
    return round(records / seconds) if seconds else None


def tables_written(run: Run, output: Path) -> dict[str, Any]:
    """Rows per table, the seconds to the last window written and to the exit."""
    tables = {t.folder: written(output / t.folder) for t in TABLES}
    stamps = [w.newest for w in tables.values() if w.newest is not None]
    ok = run.returncode == 0
    return {
        "seconds_to_last_window": _seconds(run, max(stamps)) if stamps and ok else None,
        "seconds_to_exit": round(run.exited - run.started, 2),
        "returncode": run.returncode,
        "load_average_1m_before": run.load_average_1m_before,
        **{f"{name}_rows": w.rows for name, w in tables.items()},
        **{f"{name}_files": w.files for name, w in tables.items()},
    }


def run_job(
    stack: StackHandle, topics: Topics, work: Path, timeout_s: float, extra: dict[str, str]
) -> dict[str, Any]:
    output = work / "out"
    env = child_env(
        stack,
        topics,
        {
            "KAPPA_AGGREGATE_OUTPUT": str(output),
            "KAPPA_AGGREGATE_CHECKPOINT_DIR": str(work / "ckpt"),
            **extra,
        },
    )
    kappa = str(Path(sys.executable).parent / "kappa")
    run = run_cold("job", [kappa, "aggregate", "--available-now"], env, work, timeout_s)
    figures = tables_written(run, output)
    late = written(output / "late")
    figures["late_rows"] = late.rows
    figures["seconds_to_late_written"] = _seconds(run, late.newest)
    # The capture of the last batches may end after the last window.
    done = [s for s in (figures["seconds_to_last_window"], figures["seconds_to_late_written"]) if s]
    figures["seconds_to_last_output"] = max(done) if done and run.returncode == 0 else None
    match = SUMMARY_RE.search(run.stdout())
    if match:
        batches, billing, network, captured, undecodable = (
            int(g.replace(",", "")) for g in match.groups()
        )
        figures["summary"] = {
            "micro_batches": batches,
            "billing_rows": billing,
            "network_rows": network,
            "late_captured": captured,
            "undecodable": undecodable,
        }
    if run.returncode != 0:
        figures["stderr_tail"] = run.stderr_tail()
    return figures


def plain_cmd(topics: Topics, work: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.plain_aggregate",
        "--topic",
        topics.valid,
        "--output",
        str(work / "out"),
        "--checkpoint",
        str(work / "ckpt"),
        *flags,
    ]


def run_floor(stack: StackHandle, topics: Topics, work: Path, timeout_s: float) -> dict[str, Any]:
    """Read and decode the topic, nothing else: seconds from the process start to the
    query's end."""
    cmd = plain_cmd(topics, work, "--read-only")
    run = run_cold("floor", cmd, child_env(stack, topics, {}), work, timeout_s)
    lines = run.stdout().strip().splitlines()
    figures: dict[str, Any] = {
        "seconds_to_query_end": None,
        "seconds_to_exit": round(run.exited - run.started, 2),
        "returncode": run.returncode,
        "load_average_1m_before": run.load_average_1m_before,
    }
    if run.returncode == 0 and lines:
        out = json.loads(lines[-1])
        figures["seconds_to_query_end"] = round(out["query_ended"] - run.started, 2)
        figures["queries"] = out["queries"]
    else:
        figures["stderr_tail"] = run.stderr_tail()
    return figures


def run_plain(
    stack: StackHandle,
    topics: Topics,
    work: Path,
    timeout_s: float,
    extra: dict[str, str],
    *flags: str,
) -> dict[str, Any]:
    output = work / "out"
    cmd = plain_cmd(topics, work, *flags)
    run = run_cold(work.name, cmd, child_env(stack, topics, extra), work, timeout_s)
    figures = tables_written(run, output)
    lines = run.stdout().strip().splitlines()
    if run.returncode == 0 and lines:
        figures["queries"] = json.loads(lines[-1])["queries"]
    else:
        figures["stderr_tail"] = run.stderr_tail()
    return figures


def row_check(records: int, job: dict[str, Any], plain: dict[str, Any]) -> list[str]:
    """Warnings where the job and the plain query wrote different numbers of window rows."""
    warnings = []
    for table in TABLES:
        key = f"{table.folder}_rows"
        if job[key] != plain[key]:
            warnings.append(
                f"{records:,} records: {table.folder} has {job[key]:,} window rows from the "
                f"job and {plain[key]:,} from the plain query"
            )
    return warnings


def pair(
    stack: StackHandle,
    topics: Topics,
    work: Path,
    records: int,
    extra: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The job, then the plain query, over the same topic; the row check's warnings."""
    timeout_s = 600 + records / 5_000
    job = run_job(stack, topics, work / "job", timeout_s, extra)
    plain = run_plain(stack, topics, work / "plain", timeout_s, extra)
    warnings = row_check(records, job, plain)
    for name, figures in (("job", job), ("plain", plain)):
        if figures["returncode"] != 0:
            warnings.append(f"{records:,} records: the {name} process failed or timed out")
    return job, plain, warnings


def cold_figures(
    records: int,
    job: dict[str, Any],
    plain: dict[str, Any],
    floor: dict[str, Any] | None = None,
    bare: dict[str, Any] | None = None,
) -> dict[str, Any]:
    job_s = job["seconds_to_last_window"]
    plain_s = plain["seconds_to_last_window"]
    figures = {
        "records": records,
        "job_seconds_to_last_window": job_s,
        "plain_seconds_to_last_window": plain_s,
        "ratio_job_to_plain": round(job_s / plain_s, 3) if job_s and plain_s else None,
        "job_cdr_per_s": _per_s(records, job_s),
        "plain_cdr_per_s": _per_s(records, plain_s),
    }
    if floor is not None:
        floor_s = floor["seconds_to_query_end"]
        figures["floor_read_decode_seconds"] = floor_s
        figures["floor_cdr_per_s"] = _per_s(records, floor_s)
        figures["ratio_job_to_floor"] = round(job_s / floor_s, 3) if job_s and floor_s else None
    if bare is not None:
        bare_s = bare["seconds_to_last_window"]
        figures["bare_seconds_to_last_window"] = bare_s
        figures["bare_cdr_per_s"] = _per_s(records, bare_s)
    return figures


def aim(cold: list[dict[str, Any]]) -> dict[str, Any]:
    target = {
        "records": AIM_RECORDS,
        "ratio_job_to_plain_at_most": AIM_RATIO,
        "job_cdr_per_s_at_least": AIM_CDR_PER_S,
    }
    row = next((c for c in cold if c["records"] == AIM_RECORDS), None)
    if row is None:
        return {**target, "met": None, "note": f"{AIM_RECORDS:,} CDRs not in this run"}
    ratio, rate = row["ratio_job_to_plain"], row["job_cdr_per_s"]
    met = ratio is not None and rate is not None and ratio <= AIM_RATIO and rate >= AIM_CDR_PER_S
    reference = [r for r in (row.get("floor_cdr_per_s"), row.get("bare_cdr_per_s")) if r]
    return {
        **target,
        "ratio_job_to_plain": ratio,
        "job_cdr_per_s": rate,
        "met": met,
        "floor_cdr_per_s": row.get("floor_cdr_per_s"),
        "bare_cdr_per_s": row.get("bare_cdr_per_s"),
        "rate_within_reach": (
            None if not reference else all(r >= AIM_CDR_PER_S for r in reference)
        ),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        default="1000000,5000000",
        help="records per run, comma-separated (default 1000000,5000000)",
    )
    ap.add_argument("--seed", type=int, default=7, help="seed of the generated CDRs")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument(
        "--batched",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"also drain each topic in {BATCHES} micro-batches (late rows dropped and captured)",
    )
    ap.add_argument("--results", type=Path, default=RESULTS / "aggregate.json")
    args = ap.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="kappa-bench-aggregate-"))
    began = time.perf_counter()
    cold: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    plains: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    bares: list[dict[str, Any]] = []
    batched: list[dict[str, Any]] = []
    warnings: list[str] = []
    try:
        with bench_stack() as stack:
            for records in sizes:
                topics = Topics.fresh()
                topics.create(stack.kafka)
                try:
                    print(f"loading {records:,} CDRs into {topics.valid} ...", flush=True)
                    loaded = load(stack.kafka, stack.registry, topics.valid, records, args.seed)
                    print(f"  loaded in {loaded.seconds:.1f} s", flush=True)
                    loads.append(
                        {
                            "records": records,
                            "late_records": loaded.late,
                            "seconds": round(loaded.seconds, 1),
                            "cdr_per_s": _per_s(records, loaded.seconds),
                        }
                    )
                    size_dir = work / str(records)
                    job, plain, warned = pair(stack, topics, size_dir, records, {})
                    floor = run_floor(stack, topics, size_dir / "floor", 600 + records / 5_000)
                    if floor["returncode"] != 0:
                        warned.append(f"{records:,} records: the floor process failed")
                    bare = run_plain(
                        stack, topics, size_dir / "bare", 600 + records / 5_000, {}, "--bare"
                    )
                    if bare["returncode"] != 0:
                        warned.append(f"{records:,} records: the bare process failed")
                    cold.append(cold_figures(records, job, plain, floor, bare))
                    floors.append({"records": records, **floor})
                    bares.append({"records": records, **bare})
                    jobs.append({"records": records, **job})
                    plains.append({"records": records, **plain})
                    warnings += warned
                    if args.batched:
                        cap = math.ceil(records / BATCHES)
                        extra = {"KAPPA_AGGREGATE_MAX_OFFSETS_PER_TRIGGER": str(cap)}
                        fresh = Topics(topics.valid, *Topics.fresh().outputs())
                        fresh.create(stack.kafka)
                        try:
                            job, plain, warned = pair(
                                stack, fresh, size_dir / "batched", records, extra
                            )
                        finally:
                            delete_topics(stack.kafka, fresh.outputs())
                        batched.append(
                            {
                                **cold_figures(records, job, plain),
                                "max_offsets_per_trigger": cap,
                                "job": job,
                                "plain": plain,
                            }
                        )
                        warnings += warned
                    print(json.dumps(cold[-1]), flush=True)
                finally:
                    topics.delete(stack.kafka)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    defaults = {name: f.default for name, f in AggregateSettings.model_fields.items()}
    result: dict[str, Any] = {
        "benchmark": "aggregate",
        "measured": (
            "wall seconds from just before the process starts to the newest Parquet file "
            "with window rows (billing_realtime/, network_realtime/), cold: one fresh "
            "process per run; CDR/s = records / those seconds"
        ),
        "cold_start": cold,
        "aim": aim(cold),
        "warnings": warnings,
        "extras": {
            "order": ORDER,
            "load": loads,
            "job": jobs,
            "plain": plains,
            "floor": floors,
            "bare": bares,
            "batched": batched,
            "settings": {
                "job": "kappa aggregate --available-now, default settings",
                "plain": "python -m bench.plain_aggregate (trigger availableNow)",
                "floor": "python -m bench.plain_aggregate --read-only (noop sink)",
                "bare": "python -m bench.plain_aggregate --bare (no caller set: other rows)",
                "master": defaults["master"],
                "state_store": defaults["state_store"],
                "shuffle_partitions": defaults["shuffle_partitions"],
                "driver_memory": defaults["driver_memory"],
                "partitions": PARTITIONS,
                "late_share": LATE_SHARE,
                "late_by_minutes": LATE_BY.total_seconds() / 60,
                "seed": args.seed,
            },
            "bench_seconds": round(time.perf_counter() - began, 1),
        },
        "machine": machine(),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("cold_start", "aim", "warnings")}, indent=2))
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()
