"""Wiring of a replay: settings → plan → Spark → job → metrics. Used by the CLI and ``api``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession

from kappa.settings import (
    AggregateSettings,
    KafkaSettings,
    RegistrySettings,
    ReplaySettings,
    StackSettings,
    TopicSettings,
)
from monitoring import metrics
from replay import job
from replay.context import ReplayContext
from replay.exceptions import ReplayError, ReplayFailedError
from replay.manifest import Manifest, Summary
from replay.plan import ReplayPlan, plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Every settings class a replay reads, read once at the entry point."""

    kafka: KafkaSettings
    registry: RegistrySettings
    topics: TopicSettings
    stack: StackSettings
    aggregate: AggregateSettings
    replay: ReplaySettings

    @classmethod
    def load(cls) -> Settings:
        return cls(
            KafkaSettings(),
            RegistrySettings(),
            TopicSettings(),
            StackSettings(),
            AggregateSettings(),
            ReplaySettings(),
        )

    @property
    def margin(self) -> timedelta:
        return timedelta(seconds=self.replay.lateness_margin_s)

    def output_root(self, output: str | None = None) -> str:
        return output.rstrip("/") if output else self.replay.output_root(self.stack.state_dir)

    def context(self, output: str | None = None, progress: bool | None = None) -> ReplayContext:
        return ReplayContext(
            kafka=self.kafka,
            registry=self.registry,
            aggregate=self.aggregate,
            output_root=self.output_root(output),
            progress=self.replay.progress if progress is None else progress,
            records_per_task=self.replay.records_per_task,
        )


def plan_range(
    s: Settings,
    start: datetime,
    end: datetime,
    topic: str | None = None,
    now: datetime | None = None,
) -> ReplayPlan:
    return plan(s.kafka, topic or s.topics.valid, start, end, s.margin, now=now)


def spark_session(s: Settings, master: str | None = None) -> SparkSession:
    """The process's SparkSession (an already running one is reused)."""
    from streams.spark import session

    return session(s.aggregate, s.stack, app_name="kappa-replay", master=master or s.replay.master)


def replay_range(
    s: Settings,
    start: datetime,
    end: datetime,
    *,
    output: str | None = None,
    topic: str | None = None,
    spark: SparkSession | None = None,
    master: str | None = None,
    progress: bool | None = None,
    now: datetime | None = None,
) -> Manifest:
    """Plan, run and publish the replay of ``[start, end)``; return its manifest."""
    started = time.monotonic()
    try:
        the_plan = plan_range(s, start, end, topic, now=now)
    except ReplayError:
        metrics.REPLAY_RUNS.labels("refused").inc()
        raise
    session = spark or spark_session(s, master)
    try:
        manifest = job.run(session, the_plan, s.context(output, progress))
    except ReplayFailedError:
        metrics.REPLAY_RUNS.labels("failed").inc()
        raise
    seconds = time.monotonic() - started
    manifest = manifest.with_summary(seconds_with_startup=round(seconds, 3))
    record_success(manifest, seconds)
    return manifest


def record_success(manifest: Manifest, seconds: float) -> None:
    metrics.REPLAY_RUNS.labels("success").inc()
    metrics.REPLAY_RECORDS.inc(manifest.summary.records)
    metrics.REPLAY_SECONDS.observe(seconds)
    metrics.REPLAY_LAST_SUCCESS.set(datetime.now(UTC).timestamp())
    metrics.REPLAY_LAST_INTERVAL_END.set(manifest.range.to_ms / 1000)
    record_interval(manifest.summary)


def record_interval(summary: Summary) -> None:
    metrics.REPLAY_INTERVAL_RECORDS.set(summary.records)
    metrics.REPLAY_INTERVAL_CUSTOMERS.set(summary.callers)
    metrics.REPLAY_INTERVAL_TOWERS.set(summary.towers)
    metrics.REPLAY_INTERVAL_REVENUE.set(summary.revenue)
