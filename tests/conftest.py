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
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kappa.stack.containers import running_test_stack
from kappa.stack.testing import HdfsHandle, StackHandle, TopicFactory, running_hdfs

pytest_plugins = [
    "tests.fixtures.spark",
    "tests.fixtures.validate",
    "tests.fixtures.monitoring",
    "tests.fixtures.cluster",
]


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
