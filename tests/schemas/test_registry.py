"""The contract against the real registry: subjects, BACKWARD compatibility."""

from __future__ import annotations

import json
import uuid

import pytest

from kappa import clients
from kappa.settings import TopicSettings
from schemas import SchemaName, load_schema
from schemas.contract import register, register_topic_schemas, subject
from schemas.exceptions import IncompatibleSchemaError
from tests.harness.stack import StackHandle

pytestmark = pytest.mark.integration


def test_topic_schemas_register_with_backward_compatibility(stack: StackHandle) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = TopicSettings(
        raw=f"raw.{suffix}",
        valid=f"valid.{suffix}",
        dlq=f"dlq.{suffix}",
        billing=f"billing.{suffix}",
        network=f"network.{suffix}",
        late=f"late.{suffix}",
    )
    client = clients.registry(stack.registry)
    ids = register_topic_schemas(client, topics)
    assert set(ids) == set(topics.all())
    for topic in topics.all():
        assert client.get_compatibility(subject(topic)) == "BACKWARD"
    # Registering again is harmless and returns the same ids.
    assert register_topic_schemas(client, topics) == ids


def test_registry_rejects_an_incompatible_change(stack: StackHandle) -> None:
    client = clients.registry(stack.registry)
    name = f"compat.{uuid.uuid4().hex[:8]}-value"
    cdr = load_schema(SchemaName.CDR)
    first = register(client, name, json.dumps(cdr))

    # Adding a field with a default is a BACKWARD-compatible change.
    evolved = json.loads(json.dumps(cdr))
    evolved["fields"].append({"name": "roaming", "type": "boolean", "default": False})
    second = register(client, name, json.dumps(evolved))
    assert second != first

    # A new required field without a default is not: old records could not be read.
    broken = json.loads(json.dumps(evolved))
    broken["fields"].append({"name": "imsi", "type": "string"})
    with pytest.raises(IncompatibleSchemaError, match="incompatible"):
        register(client, name, json.dumps(broken))
    # Narrowing an enum is not either.
    narrowed = json.loads(json.dumps(evolved))
    narrowed["fields"][3]["type"]["symbols"] = ["VOICE", "SMS"]
    with pytest.raises(IncompatibleSchemaError):
        register(client, name, json.dumps(narrowed))
    assert len(client.get_versions(name)) == 2


def test_concurrent_registration_of_a_fresh_subject(stack: StackHandle) -> None:
    """A producer and a validator starting together both register the same subjects."""
    from concurrent.futures import ThreadPoolExecutor

    name = f"race.{uuid.uuid4().hex[:8]}-value"
    text = json.dumps(load_schema(SchemaName.CDR_RAW))

    def one(_: int) -> int:
        return register(clients.registry(stack.registry), name, text)

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = set(pool.map(one, range(6)))
    assert len(ids) == 1
    assert clients.registry(stack.registry).get_compatibility(name) == "BACKWARD"
