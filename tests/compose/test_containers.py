"""tests.harness.containers without a Docker engine: the choice, and the fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.harness import containers
from tests.harness.containers import (
    ContainerStackError,
    docker_unavailable_reason,
    stack_kind,
    start_container_stack,
)

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
NO_ENGINE = "unix:///nonexistent/kappa-test/docker.sock"


def test_local_is_the_default() -> None:
    assert stack_kind({}) == "local"
    assert stack_kind({"KAPPA_TEST_STACK": "Containers "}) == "containers"


def test_unknown_choice_is_refused() -> None:
    with pytest.raises(ContainerStackError, match="KAPPA_TEST_STACK must be"):
        stack_kind({"KAPPA_TEST_STACK": "docker"})


def test_local_choice_starts_nothing() -> None:
    assert start_container_stack({"KAPPA_TEST_STACK": "local"}) is None


def test_no_engine_says_so_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    reason = docker_unavailable_reason()
    assert reason is not None
    assert reason.startswith("no Docker engine answers")
    with pytest.warns(UserWarning, match="using the local stack instead"):
        assert start_container_stack({"KAPPA_TEST_STACK": "containers"}) is None


def test_images_are_the_compose_pins() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    images = {svc.get("image") for svc in raw["services"].values()}
    assert containers.KAFKA_IMAGE in images
    assert containers.REGISTRY_IMAGE in images
