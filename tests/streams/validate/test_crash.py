"""Crash safety: kill -9 the validator at random moments while records arrive.

50k records with 5% faults (4% bad across every fault kind, 1% duplicates) are
produced at about 2.5k/s while a `kappa validate` subprocess is killed with
SIGKILL five times, each at a random moment after it started judging, and
restarted. A last run with --until-caught-up finishes the topic. Then the ledger
balances, read_committed cdr.valid holds no call_id twice, and the DLQ holds each
faulty record exactly once, under its rule.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from kappa.settings import TopicSettings, ValidatorSettings
from producers.generator import FaultRates
from tests.streams.validate.processes import (
    Producing,
    assert_exact_outcome,
    start_validator,
    validator_env,
    wait_assigned,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 50_000
RATE = 2500.0
SEED = 4242
FAULTS = FaultRates(bad=0.04, duplicate=0.01)
KILLS = 5


def test_kill_9_at_random_moments_loses_and_doubles_nothing(
    stack: Any,
    validator_topics: TopicSettings,
    validator_settings: ValidatorSettings,
    tmp_path: Path,
) -> None:
    topics = validator_topics
    env = validator_env(stack, topics, validator_settings)
    log = tmp_path / "validator.log"
    rng = random.Random(7)
    producer = Producing(stack, topics, COUNT, RATE, SEED, FAULTS)
    producer.start()
    started = time.monotonic()
    kills = 0
    proc = start_validator(env, log)
    try:
        while kills < KILLS:
            wait_assigned(proc, log, kills + 1, 180)
            time.sleep(rng.uniform(0.2, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            kills += 1
            proc = start_validator(env, log)
        assert producer.join(300).delivered == COUNT
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        final = start_validator(env, log, "--until-caught-up")
        assert final.wait(240) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert kills == KILLS
    elapsed = time.monotonic() - started

    n_valid, n_dead = assert_exact_outcome(stack, topics, COUNT, SEED, FAULTS)
    print(
        f"crash test: {kills} kills, {COUNT} records, {n_dead} dead letters, "
        f"{n_valid} valid, {elapsed:.0f} s"
    )
