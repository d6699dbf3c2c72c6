"""Chaos on the local cluster: nodes and the aggregation's driver killed while CDRs stream.

Fresh topics on the three-broker cluster; ``kappa validate``, ``kappa aggregate``
(Spark standalone, checkpoint and tables on HDFS) and ``kappa produce`` (a simulated
clock, 60 s of event time per wall second, 3% late and 2% faulty records) run as
subprocesses. While records stream, a broker, a Spark worker (with its executor), a
DataNode and the aggregation's driver are killed with SIGKILL, a few seconds apart;
the nodes are revived and the aggregation restarted from its HDFS checkpoint. Once
the restarted query has caught up, it is stopped; a collector then delivers a backlog
of old CDRs (late for windows closed long ago), and ``kappa aggregate --available-now``
drains it and writes every window the watermark closed.

Then: the ledger balances (each raw offset in exactly one of cdr.valid and cdr.dlq);
every closed window in billing_realtime/ and network_realtime/ equals a plain-Python
computation over all of cdr.valid minus the late CDRs the job captured, no row
missing or doubled; the capture matches Spark's own drop count batch by batch and
the counts reconcile; the restarted query went on with the first one's batch ids;
and ``kappa replay`` of a range on the cluster counts the valid CDRs of that range.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kappa import clients
from kappa.settings import TopicSettings
from schemas.contract import SchemaName, register, schema_text, subject
from schemas.wire import Decoded, WireDecoder
from stack.topics import compacted_topics
from streams.validate.ledger import ledger
from tests.fixtures.cluster import ClusterHandle
from tests.fixtures.validate import read_all
from tests.stack.chaos_tools import (
    Proc,
    WebHdfs,
    aggregated_to_end,
    caught_up,
    elect_preferred_leaders,
    wait_for,
)
from tests.streams.aggregate import expected

COUNT = 18_000  # at RATE, 60 s of traffic and 60 min of event time
RATE = 300
BACKLOG = 300  # old CDRs delivered after the stream moved on: all late
SPEED = 60.0  # event-time seconds per wall second
SEED = 6060
BAD_RATE = 0.02
LATE_RATE = 0.03
WATERMARK_MS = 10 * 60_000
TRIGGER = "5 seconds"
# Seconds after the producer starts when each node goes down; the driver follows once
# its query has run a batch.
KILL_BROKER_AT, KILL_WORKER_AT, KILL_DATANODE_AT, KILL_DRIVER_AT = 8, 16, 24, 32
TOPIC_FIELDS = ("raw", "valid", "dlq", "billing", "network", "late")


def fresh_topics(cluster: ClusterHandle) -> TopicSettings:
    """One new topic per pipeline topic; compacted where the stack compacts it."""
    defaults = TopicSettings()
    compacted = set(compacted_topics(defaults))

    def create(field: str) -> str:
        config = {"cleanup.policy": "compact"} if getattr(defaults, field) in compacted else None
        return cluster.create_topic(prefix=f"chaos.{field}", config=config)

    with ThreadPoolExecutor(len(TOPIC_FIELDS)) as pool:
        names = dict(zip(TOPIC_FIELDS, pool.map(create, TOPIC_FIELDS), strict=True))
    return TopicSettings(**names)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def window_ms(t: datetime) -> int:
    return expected.window_start(t)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(1200)
def test_kill_nodes_and_driver_while_cdrs_stream(cluster: ClusterHandle, tmp_path: Path) -> None:
    began = time.monotonic()
    topics = fresh_topics(cluster)
    run = uuid.uuid4().hex[:8]
    root = cluster.path("chaos", run)
    output, checkpoint = f"{root}/aggregate", f"{root}/checkpoint"
    env = {
        **os.environ,
        **cluster.env(),
        **{f"KAPPA_TOPIC_{f.upper()}": getattr(topics, f) for f in TOPIC_FIELDS},
        "KAPPA_DEPS_DIR": str(cluster.stack_settings.deps_dir),
        "KAPPA_VALIDATOR_GROUP_ID": f"chaos-validator-{run}",
        "KAPPA_VALIDATOR_TRANSACTIONAL_ID": f"chaos-validator-{run}",
        "KAPPA_VALIDATOR_SESSION_TIMEOUT_MS": "10000",
        "KAPPA_VALIDATOR_METRICS_PORT": "0",
        "KAPPA_PRODUCER_METRICS_PORT": "0",
        "KAPPA_AGGREGATE_OUTPUT": output,
        "KAPPA_AGGREGATE_CHECKPOINT_DIR": checkpoint,
        "KAPPA_AGGREGATE_SHUFFLE_PARTITIONS": "2",
        "KAPPA_AGGREGATE_MIN_READ_TASKS": "3",
        "KAPPA_AGGREGATE_DRIVER_MEMORY": "1g",
        "KAPPA_AGGREGATE_METRICS_PORT": "0",
        "KAPPA_REPLAY_OUTPUT": f"{root}/replay",
        "KAPPA_REPLAY_METRICS_PORT": "0",
    }
    if cluster.stack_settings.java_home is not None:
        env["KAPPA_JAVA_HOME"] = str(cluster.stack_settings.java_home)
    streaming = ["aggregate", "--master", cluster.spark_master, "--trigger", TRIGGER]
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)

    validator = Proc("validate", ["validate"], env, tmp_path)
    first = Proc("aggregate-1", streaming, env, tmp_path)
    second = Proc("aggregate-2", streaming, env, tmp_path)
    final = Proc(
        "aggregate-final",
        ["aggregate", "--master", cluster.spark_master, "--available-now"],
        env,
        tmp_path,
    )
    producer = Proc(
        "produce",
        [
            "produce",
            *("--rate", str(RATE), "--count", str(COUNT), "--duration", "150"),
            *("--clock", "simulated", "--start", iso(start), "--speed", str(SPEED)),
            *("--bad-rate", str(BAD_RATE), "--late-rate", str(LATE_RATE)),
            *("--seed", str(SEED), "--json"),
        ],
        env,
        tmp_path,
    )
    replay_from, replay_to = start + timedelta(minutes=20), start + timedelta(hours=2)
    replay = Proc(
        "replay",
        [
            "replay",
            *("--from", iso(replay_from), "--to", iso(replay_to)),
            *("--master", cluster.spark_master, "--no-progress", "--json"),
        ],
        env,
        tmp_path,
    )
    # a collector's backlog: old CDRs, their windows closed long before they arrive
    backlog = Proc(
        "produce-backlog",
        [
            "produce",
            *("--rate", str(RATE), "--count", str(BACKLOG)),
            *("--clock", "simulated", "--start", iso(start + timedelta(minutes=5))),
            *("--speed", str(SPEED), "--seed", str(SEED + 1), "--json"),
        ],
        env,
        tmp_path,
    )
    procs = [validator, first, second, final, producer, backlog, replay]
    killed: list[str] = []
    revived: list[str] = []
    moved = 0
    marks: dict[str, float] = {}  # seconds after the producer started
    hdfs = WebHdfs(cluster.local.namenode.http_url())
    kafka_conf = cluster.kafka.client_config()
    # The validator registers it too (same id); registered first, the aggregation starts
    # beside the validator with its decoder.
    register(clients.registry(cluster.registry), subject(topics.valid), schema_text(SchemaName.CDR))
    try:
        validator.start()
        first.start()
        wait_for(
            "validator assignment", lambda: "assigned topic=" in validator.text(), 120, validator
        )
        wait_for("query start", lambda: "aggregate query started" in first.text(), 300, first)

        # -- traffic and chaos ---------------------------------------------------
        producer.start()
        t0 = time.monotonic()

        def at(seconds: float) -> None:
            time.sleep(max(0.0, t0 + seconds - time.monotonic()))

        at(KILL_BROKER_AT)
        cluster.kill_broker(2)
        killed.append("kafka-2")
        at(KILL_WORKER_AT)
        cluster.kill_worker(1)
        killed.append("spark-worker-1")
        at(KILL_DATANODE_AT)
        cluster.kill_datanode(1)
        killed.append("hdfs-datanode-1")
        at(KILL_DRIVER_AT)
        wait_for("a batch of the first query", lambda: bool(first.batch_ids()), 240, first)
        first.kill()
        killed.append("driver")
        marks["driver killed"] = time.monotonic() - t0
        second.start()  # from the HDFS checkpoint, while the nodes come back
        revived = cluster.revive()
        moved = elect_preferred_leaders(kafka_conf)
        marks["nodes revived"] = time.monotonic() - t0
        wait_for("a batch of the restarted query", lambda: bool(second.batch_ids()), 300, second)
        marks["restarted query's first batch"] = time.monotonic() - t0

        # -- drain ------------------------------------------------------------------
        assert producer.wait(300) == 0, producer.tail()
        produced = json.loads(producer.stdout().strip().splitlines()[-1])
        assert produced["errors"] == 0, produced
        assert produced["delivered"] == produced["sent"] == COUNT, produced
        marks["producer done"] = time.monotonic() - t0
        validated = caught_up(kafka_conf, env["KAPPA_VALIDATOR_GROUP_ID"], topics.raw)
        wait_for("the validator caught up with cdr.raw", validated, 300, validator)
        marks["validator caught up"] = time.monotonic() - t0
        wait_for(
            "the restarted query caught up with cdr.valid",
            aggregated_to_end(kafka_conf, topics.valid, hdfs, checkpoint),
            300,
            second,
        )
        marks["restarted query caught up"] = time.monotonic() - t0
        assert second.terminate(240) == 0, second.tail()
        marks["streaming query stopped"] = time.monotonic() - t0

        # -- a late backlog, then the drain ---------------------------------------------
        assert backlog.start().wait(120) == 0, backlog.tail()
        wait_for("the validator caught up with the backlog", validated, 120, validator)
        assert validator.terminate(120) == 0, validator.tail()
        assert final.start().wait(480) == 0, final.tail()
        marks["drained"] = time.monotonic() - t0
    except BaseException:
        print(f"chaos: {marks}", file=sys.stderr)
        for proc in procs:
            if proc.popen is not None:
                print(proc.tail(2000), file=sys.stderr)
        raise
    finally:
        for proc in procs:
            proc.kill()
        if cluster.killed:  # the session's cluster serves later tests
            cluster.revive()
    assert sorted(revived) == sorted(k for k in killed if k != "driver")

    # -- every raw record in exactly one of cdr.valid and cdr.dlq ---------------------
    report = ledger(
        cluster.kafka,
        cluster.registry,
        topics,
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=datetime(2100, 1, 1, tzinfo=UTC),
    )
    assert report.balanced, report.as_dict()
    assert report.raw == COUNT + BACKLOG

    # -- the windows: all of cdr.valid minus the captured late CDRs ---------------------
    decoder = WireDecoder(clients.registry(cluster.registry))
    valid = []
    for msg in read_all(cluster.kafka, topics.valid):
        got = decoder.decode(msg.value())
        assert isinstance(got, Decoded), got
        valid.append(got.record)
    assert len(valid) == report.valid
    ids = Counter(c["call_id"] for c in valid)
    assert ids.most_common(1)[0][1] == 1, ids.most_common(3)

    late_rows = hdfs.parquet(f"{output}/late").to_pylist()
    late = Counter(str(r["call_id"]) for r in late_rows)
    assert len(late) >= BACKLOG
    assert late.most_common(1)[0][1] == 1, late.most_common(3)
    assert set(late) <= set(ids)

    watermark = max(expected.ms(c["event_time"]) for c in valid) - WATERMARK_MS
    on_time = [c for c in valid if c["call_id"] not in late]
    tables = {}
    for folder, key, compute in (
        ("billing_realtime", "caller_num", expected.billing),
        ("network_realtime", "tower_id", expected.network),
    ):
        got_rows = expected.frame_to_table(hdfs.parquet(f"{output}/{folder}").to_pandas(), key)
        want = expected.closed(compute(on_time), watermark)
        assert set(got_rows) == set(want), (
            folder,
            sorted(set(want) - set(got_rows))[:5],
            sorted(set(got_rows) - set(want))[:5],
        )
        wrong = [k for k in want if got_rows[k] != want[k]]
        assert not wrong, (folder, [(k, got_rows[k], want[k]) for k in wrong[:3]])
        tables[folder] = got_rows
    windows = {k[0] for k in tables["network_realtime"]}

    # -- the capture: Spark's drops, batch by batch; nothing lost, nothing twice -----------
    closed_valid = [
        c for c in valid if window_ms(c["event_time"]) + expected.WINDOW_MS <= watermark
    ]
    assert all(window_ms(r["event_time"]) + expected.WINDOW_MS <= watermark for r in late_rows)
    events = sum(row["events"] for row in tables["network_realtime"].values())
    assert events + len(late) == len(closed_valid)
    audits = [
        json.loads(hdfs.read(f"{checkpoint}/kappa-late/{name}"))
        for name in hdfs.files(f"{checkpoint}/kappa-late")
        if name.isdigit()
    ]
    reported = [a for a in audits if a["dropped_by_watermark"] is not None]
    assert reported, audits
    assert [a for a in reported if a["late_groups"] != a["dropped_by_watermark"]] == []
    assert sum(a["late"] for a in audits) == len(late)

    # -- the restarted query went on from the checkpoint ---------------------------------
    # (The last run may find nothing left: the second one ran the batch that closed the
    # windows of the final watermark before it stopped.)
    ran = [first.batch_ids(), second.batch_ids(), final.batch_ids()]
    assert ran[0], ran
    assert ran[1], ran
    assert ran[0][0] == 0
    assert ran[1][0] in (ran[0][-1], ran[0][-1] + 1), ran
    last = ran[2] or ran[1]
    if ran[2]:
        assert ran[2][0] in (ran[1][-1], ran[1][-1] + 1), ran
    commits = sorted(int(n) for n in hdfs.files(f"{checkpoint}/commits") if n.isdigit())
    assert commits == list(range(commits[0], last[-1] + 1)), commits

    # -- the replay on the cluster ----------------------------------------------------------
    replay_began = time.monotonic()
    try:
        assert replay.start().wait(420) == 0, replay.tail()
    finally:
        replay.kill()
    out = replay.stdout()
    manifest = json.loads(out[out.index("{") :])
    lo, hi = expected.ms(replay_from), expected.ms(replay_to)
    in_range = sum(lo <= expected.ms(c["event_time"]) < hi for c in valid)
    assert manifest["counts"]["records"] == in_range > 0, manifest["counts"]
    assert manifest["path"].startswith("hdfs://"), manifest["path"]

    print(
        f"chaos: {COUNT:,} + {BACKLOG} CDRs produced, {report.valid:,} valid, "
        f"{report.dead:,} dlq, "
        f"{len(late):,} late; {len(windows)} windows closed ({len(tables['billing_realtime']):,} "
        f"billing and {len(tables['network_realtime']):,} tower rows compared); "
        f"{last[-1] + 1} batches (per run {[len(r) for r in ran]}), "
        f"{len(reported)} batches with drops checked against Spark's count; killed {killed}, "
        f"revived {revived} ({moved} partitions back to their preferred leader); "
        f"replay {time.monotonic() - replay_began:.0f} s "
        f"({in_range:,} records); total {time.monotonic() - began:.0f} s; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in marks.items())
    )
