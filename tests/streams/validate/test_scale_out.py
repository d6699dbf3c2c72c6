"""Scale-out: several validators share the work, instances die and join, nothing is lost
or doubled.

Three ``kappa validate`` processes (one consumer group, each its own stable
``KAPPA_VALIDATOR_TRANSACTIONAL_ID``, as the README says to run them) judge 30k
records with 5% faults produced at about 2k/s. Meanwhile, at random moments, an
instance is killed with SIGKILL and restarted with its id, or killed for good, or a
new one joins with a new id (at least one always runs). The group rebalances each
time; the instances then finish the topic by themselves. The ledger balances,
read_committed cdr.valid holds no call_id twice, and the DLQ holds each faulty
record exactly once, under its rule.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kappa.settings import TopicSettings, ValidatorSettings
from producers.generator import FaultRates
from tests.streams.validate.processes import (
    Producing,
    assert_exact_outcome,
    ledger_report,
    start_validator,
    validator_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 30_000
RATE = 2000.0
SEED = 5151
FAULTS = FaultRates(bad=0.04, duplicate=0.01)
INSTANCES = 3
EVENTS = 6


class Fleet:
    """Validator processes by transactional id, each with its own log."""

    def __init__(
        self, stack: Any, topics: TopicSettings, settings: ValidatorSettings, folder: Path
    ) -> None:
        self.stack, self.topics, self.settings, self.folder = stack, topics, settings, folder
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.born = 0
        self.events: list[str] = []

    def start(self, tid: str | None = None) -> str:
        if tid is None:
            tid = f"{self.settings.transactional_id}-{self.born}"
            self.born += 1
        env = validator_env(self.stack, self.topics, self.settings, tid)
        self.running[tid] = start_validator(env, self.folder / f"{tid}.log")
        return tid

    def kill(self, tid: str) -> None:
        proc = self.running.pop(tid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def check_alive(self) -> None:
        for tid, proc in self.running.items():
            log = (self.folder / f"{tid}.log").read_text(errors="replace")[-3000:]
            assert proc.poll() is None, f"{tid} exited {proc.returncode}: {log}"

    def stop(self) -> None:
        for proc in self.running.values():
            proc.send_signal(signal.SIGTERM)
        for tid in list(self.running):
            proc = self.running.pop(tid)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def test_instances_killed_and_added_under_load_lose_and_double_nothing(
    stack: Any,
    validator_topics: TopicSettings,
    validator_settings: ValidatorSettings,
    tmp_path: Path,
) -> None:
    topics = validator_topics
    rng = random.Random(11)
    producer = Producing(stack, topics, COUNT, RATE, SEED, FAULTS)
    fleet = Fleet(stack, topics, validator_settings, tmp_path)
    try:
        for _ in range(INSTANCES):
            fleet.start()
        producer.start()
        for _ in range(EVENTS):
            time.sleep(rng.uniform(2.0, 5.0))
            fleet.check_alive()
            choice = rng.choice(("restart", "remove", "add"))
            if choice != "add" and len(fleet.running) > 1:
                tid = rng.choice(sorted(fleet.running))
                fleet.kill(tid)
                if choice == "restart":
                    time.sleep(rng.uniform(0.0, 2.0))
                    fleet.start(tid)
                fleet.events.append(f"{choice} {tid}")
            else:
                fleet.events.append(f"add {fleet.start()}")
        assert producer.join(300).delivered == COUNT
        # The fleet finishes the topic by itself.
        deadline = time.monotonic() + 240
        report = ledger_report(stack, topics)
        while not (report.balanced and report.raw == COUNT) and time.monotonic() < deadline:
            fleet.check_alive()
            time.sleep(3)
            report = ledger_report(stack, topics)
        fleet.check_alive()
    finally:
        fleet.stop()
    n_valid, n_dead = assert_exact_outcome(stack, topics, COUNT, SEED, FAULTS)
    print(
        f"scale-out test: {'; '.join(fleet.events)}; {COUNT} records, "
        f"{n_valid} valid, {n_dead} dead letters"
    )
