"""What the chaos test (tests/stack/test_chaos.py) drives and reads the cluster with.

``Proc``: a ``kappa`` command as a subprocess in its own process group, logged to files,
stopped with SIGTERM or killed with SIGKILL; ``wait_for``: a bounded poll that fails
early when a watched process ends; ``WebHdfs``: files and Parquet tables of the
cluster's HDFS over WebHDFS (no JVM in the test process); ``caught_up`` and
``aggregated_to_end``: whether the validator and the aggregation have reached the end
of their input topics; ``elect_preferred_leaders``: leaders back on a revived broker.
"""

from __future__ import annotations

import getpass
import io
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote, urlencode, urlparse
from urllib.request import urlopen

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, ElectionType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.harness.proc import KappaProc

BATCH = re.compile(r"batch id=(\d+) windows=")


class Proc(KappaProc):
    """A ``kappa`` command whose waits are assertions: one that does not end in time
    fails the test with its output."""

    def wait(self, timeout: float) -> int:
        code = self.wait_or_kill(timeout)
        if code is None:
            msg = f"{self.name} did not end within {timeout:.0f} s\n{self.tail()}"
            raise AssertionError(msg)
        return code

    def terminate(self, timeout: float) -> int:
        """SIGTERM to the command itself (it stops its work cleanly); its exit status."""
        self.send_term()
        return self.wait(timeout)

    def batch_ids(self) -> list[int]:
        return sorted({int(m) for m in BATCH.findall(self.text())})


def wait_for(what: str, cond: Callable[[], bool], timeout: float, *watch: Proc) -> None:
    """Poll ``cond`` until true; fail after ``timeout`` or as soon as a watched process ends."""
    deadline = time.monotonic() + timeout
    while not cond():
        for proc in watch:
            if not proc.running:
                msg = f"{proc.name} ended while waiting for {what}\n{proc.tail()}"
                raise AssertionError(msg)
        if time.monotonic() > deadline:
            for proc in watch:
                proc.dump_stacks()
            tails = "\n".join(p.tail(6000) for p in watch)
            msg = f"no {what} within {timeout:.0f} s\n{tails}"
            raise AssertionError(msg)
        time.sleep(0.5)


class WebHdfs:
    """Reads files of the cluster's HDFS over WebHDFS (no JVM in the test process)."""

    def __init__(self, http_url: str) -> None:
        self.base = f"{http_url}/webhdfs/v1"
        self.user = getpass.getuser()

    def _get(self, url: str, op: str) -> bytes:
        query = urlencode({"op": op, "user.name": self.user})
        with urlopen(f"{self.base}{quote(urlparse(url).path)}?{query}", timeout=60) as resp:
            data: bytes = resp.read()
            return data

    def files(self, url: str) -> list[str]:
        """Names of the files in folder ``url`` (none when it does not exist)."""
        try:
            listing = json.loads(self._get(url, "LISTSTATUS"))
        except HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return sorted(
            s["pathSuffix"] for s in listing["FileStatuses"]["FileStatus"] if s["type"] == "FILE"
        )

    def read(self, url: str) -> bytes:
        return self._get(url, "OPEN")

    def parquet(self, url: str) -> pa.Table:
        """Every Parquet file of the table folder ``url``, as one table."""
        parts = [
            pq.read_table(io.BytesIO(self.read(f"{url}/{name}")))
            for name in self.files(url)
            if name.endswith(".parquet")
        ]
        assert parts, f"no Parquet file in {url}"
        return pa.concat_tables(parts, promote_options="default")


def caught_up(kafka_conf: dict[str, Any], group: str, topic: str) -> Callable[[], bool]:
    """Whether ``group`` has committed every partition of ``topic`` to its end."""

    def check() -> bool:
        consumer = Consumer({**kafka_conf, "group.id": group, "enable.auto.commit": False})
        try:
            meta = consumer.list_topics(topic, timeout=30).topics[topic]
            parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
            committed = consumer.committed(parts, timeout=30)
            ends = [consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in parts]
        except KafkaException:  # a coordinator or a leader moving: ask again
            return False
        finally:
            consumer.close()
        return all(c.offset == end for c, end in zip(committed, ends, strict=True))

    return check


def aggregated_to_end(
    kafka_conf: dict[str, Any], topic: str, hdfs: WebHdfs, checkpoint: str
) -> Callable[[], bool]:
    """Whether the aggregation has committed a batch that read ``topic`` to its end."""

    def check() -> bool:
        commits = [int(n) for n in hdfs.files(f"{checkpoint}/commits") if n.isdigit()]
        if not commits:
            return False
        logged = hdfs.read(f"{checkpoint}/offsets/{max(commits)}").decode()
        sources = [json.loads(line) for line in logged.split("\n") if line.startswith("{")][1:]
        read = {int(p): o for s in sources for p, o in s.get(topic, {}).items()}
        consumer = Consumer({**kafka_conf, "group.id": "chaos-ends"})
        try:
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), 30)[1] for p in read
            }
        except KafkaException:  # a leader moving (a broker came back): ask again
            return False
        finally:
            consumer.close()
        return bool(read) and read == ends

    return check


def elect_preferred_leaders(kafka_conf: dict[str, Any], timeout: float = 120.0) -> int:
    """Give every partition back to its preferred leader; the partitions moved.

    A revived broker leads nothing until Kafka's own rebalance, up to five minutes later,
    moves leaders under whoever is reading then. Retried while a revived replica is not
    in sync yet."""
    admin = AdminClient(kafka_conf)
    deadline = time.monotonic() + timeout
    moved: set[TopicPartition] = set()
    while True:
        try:
            results = admin.elect_leaders(ElectionType.PREFERRED).result()
        except KafkaException:
            results = None
        if results is not None:
            moved |= {tp for tp, err in results.items() if err is None}
            waiting = [
                tp
                for tp, err in results.items()
                if err is not None and err.args[0].code() != KafkaError.ELECTION_NOT_NEEDED
            ]
            if not waiting:
                return len(moved)
        if time.monotonic() > deadline:
            msg = f"preferred leaders not elected within {timeout:.0f} s: {results}"
            raise AssertionError(msg)
        time.sleep(1.0)
