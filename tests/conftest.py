"""Shared fixtures of the whole test suite.

- ``stack`` (session): a Kafka broker + Schema Registry. Started on free ports in a
  temporary folder, or, when KAPPA_KAFKA_BOOTSTRAP / KAPPA_SCHEMA_REGISTRY_URL are
  set, the stack they point at. Attributes: ``kafka`` (KafkaSettings),
  ``registry`` (RegistrySettings), ``stack_settings`` (StackSettings), ``topics``
  (TopicSettings), ``bootstrap``, ``registry_url``, ``external``.
- ``topic`` (function): a factory of fresh uuid-named topics on that stack,
  ``name = topic(partitions=3)``; they are deleted after the test.
- ``hdfs`` (session, started only when a test asks for it): a NameNode + DataNode;
  ``url`` (hdfs://...), ``http_url`` (WebHDFS), ``path("a", "b")``.

Tiers. A test that starts a JVM, a broker or another service carries a marker:
``integration`` (Kafka, the registry, HDFS, Prometheus, Airflow), ``spark`` (the
shared Spark session), ``cluster`` (the multi-node cluster), ``slow`` (crash and
load tests). A test asking for one of the fixtures below gets its marker here, so
a marker is never forgotten where a fixture says what the test needs; a test that
starts a service itself (a ``kappa stack up`` subprocess) is marked in its file.
``make test-fast`` runs the tests with none of these markers: no JVM, no broker,
under two minutes. ``make test`` runs everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.harness.containers import running_test_stack
from tests.harness.stack import HdfsHandle, StackHandle, TopicFactory, running_hdfs

pytest_plugins = [
    "tests.fixtures.spark",
    "tests.fixtures.validate",
    "tests.fixtures.monitoring",
    "tests.fixtures.cluster",
]

TIER_MARKERS = ("integration", "spark", "cluster", "slow")
"""The markers of tests that need more than the Python process (see the module doc)."""

FIXTURE_MARKERS = {
    "stack": "integration",
    "topic": "integration",
    "hdfs": "integration",
    "validator_topics": "integration",
    "prometheus": "integration",
    "spark": "spark",
    "cluster": "cluster",
}
"""A fixture that starts a service -> the marker of the tests that ask for it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in names and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    with running_test_stack(tmp_path_factory.mktemp("kappa-stack"), environ=os.environ) as handle:
        yield handle


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HdfsHandle]:
    with running_hdfs(tmp_path_factory.mktemp("kappa-hdfs")) as handle:
        yield handle


@pytest.fixture
def topic(stack: StackHandle) -> Iterator[TopicFactory]:
    factory = TopicFactory(stack.kafka, stack.topics)
    yield factory
    factory.cleanup()
