#!/usr/bin/env python3
"""One-shot setup of the compose broker (the ``kafka-init`` service), idempotent.

1. a SCRAM-SHA-512 user per service, passwords from ``compose/.env``;
2. the pipeline's topics (``KAPPA_TOPIC_*``), the layout ``kappa stack up`` gives;
3. ACLs that limit each service to its own topics, consumer groups and
   transactional ids: the broker denies whatever no ACL allows.

It runs in the project image as the PLAIN ``admin`` super user on the internal
BROKER listener, in one process (one AdminClient, no JVM per call).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

#: SASL user of each service, and the variable holding its password.
USERS = {
    "producer": "PRODUCER_PASSWORD",
    "validator": "VALIDATOR_PASSWORD",
    "aggregate": "AGGREGATE_PASSWORD",
    "replay": "REPLAY_PASSWORD",
    "kafka-ui": "KAFKA_UI_PASSWORD",
}
_PASSWORD = re.compile(r"^[A-Za-z0-9._~-]{12,}$")
_SCRAM_ITERATIONS = 8192
_TIMEOUT_S = 30.0

R, W, D, DC = (
    AclOperation.READ,
    AclOperation.WRITE,
    AclOperation.DESCRIBE,
    AclOperation.DESCRIBE_CONFIGS,
)


class SetupError(Exception):
    """The broker cannot be set up as asked."""


@dataclass(frozen=True)
class Grant:
    """``operations`` on every resource ``names`` of ``kind`` for ``user``."""

    user: str
    kind: ResourceType
    names: tuple[str, ...]
    operations: tuple[AclOperation, ...]
    prefixed: bool = False

    def bindings(self) -> Iterator[AclBinding]:
        pattern = ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL
        for name in self.names:
            for op in self.operations:
                yield AclBinding(
                    self.kind,
                    name,
                    pattern,
                    f"User:{self.user}",
                    "*",
                    op,
                    AclPermissionType.ALLOW,
                )


@dataclass(frozen=True)
class Topics:
    raw: str
    valid: str
    dlq: str
    billing: str
    network: str
    late: str
    partitions: int
    retention_ms: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Topics:
        return cls(
            raw=env.get("KAPPA_TOPIC_RAW", "cdr.raw"),
            valid=env.get("KAPPA_TOPIC_VALID", "cdr.valid"),
            dlq=env.get("KAPPA_TOPIC_DLQ", "cdr.dlq"),
            billing=env.get("KAPPA_TOPIC_BILLING", "cdr.billing.5m"),
            network=env.get("KAPPA_TOPIC_NETWORK", "cdr.network.5m"),
            late=env.get("KAPPA_TOPIC_LATE", "cdr.late"),
            partitions=int(env.get("KAPPA_TOPIC_PARTITIONS", "3")),
            retention_ms=int(env.get("KAPPA_TOPIC_RETENTION_MS", str(10 * 365 * 24 * 3600 * 1000))),
        )

    def all(self) -> tuple[str, ...]:
        return (self.raw, self.valid, self.dlq, self.billing, self.network, self.late)

    def compacted(self) -> tuple[str, ...]:
        """Keyed by window|key (aggregates) or call_id (late CDRs); readers keep the
        latest value per key. The same as stack.topics.compacted_topics."""
        return (self.billing, self.network, self.late)


def grants(env: Mapping[str, str]) -> list[Grant]:
    """Who may do what: each service its topics, its groups, its transactional ids."""
    t = Topics.from_env(env)
    group = env.get("KAPPA_VALIDATOR_GROUP_ID", "kappa-validator")
    txn = env.get("VALIDATOR_TRANSACTIONAL_ID_PREFIX", "kappa-validator")
    topic, grp = ResourceType.TOPIC, ResourceType.GROUP
    return [
        # producer: writes cdr.raw (idempotent, which WRITE on a topic allows)
        Grant("producer", topic, (t.raw,), (W, D)),
        # validator: cdr.raw -> cdr.valid + cdr.dlq in transactions; its DLQ,
        # ledger and quality tools read what it wrote
        Grant("validator", topic, (t.raw,), (R, D)),
        Grant("validator", topic, (t.valid, t.dlq), (W, R, D)),
        # its internal topics, <raw>.by-call-id.<group> (streams/validate/repartition.py),
        # created by the validator at start
        Grant(
            "validator",
            topic,
            (f"{t.raw}.by-call-id.",),
            (AclOperation.CREATE, W, R, D),
            prefixed=True,
        ),
        Grant(
            "validator",
            grp,
            (group, "kappa-dlq", "kappa-ledger", "kappa-quality"),
            (R, D),
            prefixed=True,
        ),
        # instance ids <prefix>-0, -1, ... and their -redrive
        Grant("validator", ResourceType.TRANSACTIONAL_ID, (txn,), (W, D), prefixed=True),
        # aggregate (Spark): reads cdr.valid, writes the aggregates and late CDRs
        Grant("aggregate", topic, (t.valid,), (R, D)),
        Grant("aggregate", topic, (t.billing, t.network, t.late), (W, D)),
        Grant("aggregate", grp, ("spark-kafka-source",), (R, D), prefixed=True),
        # replay (Airflow tasks, parity, the ledger verification): reads the log
        Grant("replay", topic, (t.valid,), (R, D, DC)),
        Grant("replay", topic, (t.raw, t.dlq, t.billing, t.network, t.late), (R, D)),
        Grant(
            "replay",
            grp,
            ("spark-kafka-relation", "kappa-replay", "kappa-ledger", "kappa-parity"),
            (R, D),
            prefixed=True,
        ),
        # Kafka UI: read-only view of every pipeline topic and of the groups' lag
        Grant("kafka-ui", topic, t.all(), (R, D, DC)),
        Grant("kafka-ui", ResourceType.BROKER, ("kafka-cluster",), (D, DC)),
        Grant("kafka-ui", grp, ("*",), (D,)),
        Grant("kafka-ui", grp, ("kafka-ui",), (R, D), prefixed=True),
    ]


def passwords(env: Mapping[str, str]) -> dict[str, str]:
    """Each service's password, checked (present, not the placeholder, safe characters)."""
    found = {}
    for user, var in {"admin": "BROKER_ADMIN_PASSWORD", **USERS}.items():
        value = env.get(var, "")
        if not value:
            msg = f"{var} (password of {user}) is empty; set it in compose/.env"
            raise SetupError(msg)
        if value.startswith("change-me"):
            msg = f"{var} still holds the .env.example placeholder; use `openssl rand -hex 24`"
            raise SetupError(msg)
        if not _PASSWORD.match(value):
            msg = f"{var}: use 12 or more of A-Z a-z 0-9 . _ ~ - (it is embedded in JAAS strings)"
            raise SetupError(msg)
        found[user] = value
    return found


def admin_client(env: Mapping[str, str], admin_password: str) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": env.get("BROKER_ADMIN_BOOTSTRAP", "kafka:9094"),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "admin",
            "sasl.password": admin_password,
            "client.id": "kappa-kafka-init",
        }
    )


def wait_for_broker(admin: AdminClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=5)
            return
        except KafkaException as exc:
            if time.monotonic() > deadline:
                msg = f"the broker did not answer within {timeout_s:.0f} s: {exc}"
                raise SetupError(msg) from exc
            time.sleep(2)


def upsert_users(admin: AdminClient, users: Mapping[str, str]) -> None:
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, _SCRAM_ITERATIONS)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, info, pwd.encode()) for user, pwd in users.items()],
        request_timeout=_TIMEOUT_S,
    )
    for user, future in futures.items():
        future.result()
        log(f"SCRAM-SHA-512 credentials for {user}")
    # the broker applies metadata asynchronously: wait until it knows every user
    _await("SCRAM credentials", lambda: _users_known(admin, list(users)))


def _users_known(admin: AdminClient, users: list[str]) -> bool:
    try:
        for future in admin.describe_user_scram_credentials(users).values():
            future.result()
    except KafkaException:
        return False
    return True


def _await(what: str, ready: Callable[[], bool], timeout_s: float = _TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            msg = f"the broker did not apply the {what} within {timeout_s:.0f} s"
            raise SetupError(msg)
        time.sleep(0.5)


def create_topics(admin: AdminClient, topics: Topics) -> None:
    compact = {"cleanup.policy": "compact"}
    new = [
        NewTopic(
            name,
            num_partitions=topics.partitions,
            replication_factor=1,
            config={
                "retention.ms": str(topics.retention_ms),
                **(compact if name in topics.compacted() else {}),
            },
        )
        for name in topics.all()
    ]
    for name, future in admin.create_topics(new, request_timeout=_TIMEOUT_S).items():
        try:
            future.result()
            policy = "compacted" if name in topics.compacted() else "deleted after retention"
            log(f"topic {name} created ({topics.partitions} partitions, {policy})")
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            log(f"topic {name} exists")
    # topics made before they were meant to be compacted are switched (idempotent)
    switch = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in compact.items()
            ],
        )
        for name in topics.compacted()
    ]
    for resource, future in admin.incremental_alter_configs(
        switch, request_timeout=_TIMEOUT_S
    ).items():
        future.result()
        log(f"topic {resource.name}: cleanup.policy=compact")


def create_acls(admin: AdminClient, all_grants: list[Grant]) -> int:
    bindings = [b for g in all_grants for b in g.bindings()]
    for future in admin.create_acls(bindings, request_timeout=_TIMEOUT_S).values():
        future.result()
    _await("ACLs", lambda: set(bindings) <= _acls(admin))
    for user in USERS:
        mine = [g for g in all_grants if g.user == user]
        log(
            f"ACLs of {user}: "
            + "; ".join(
                f"{'/'.join(op.name for op in g.operations)} on {g.kind.name.lower()} "
                f"{','.join(g.names)}{'*' if g.prefixed else ''}"
                for g in mine
            )
        )
    return len(bindings)


def _acls(admin: AdminClient) -> set[AclBinding]:
    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    return set(admin.describe_acls(everything, request_timeout=_TIMEOUT_S).result())


def log(text: str) -> None:
    print(f"kafka-init: {text}", flush=True)


def main(env: Mapping[str, str]) -> int:
    try:
        pwds = passwords(env)
        admin = admin_client(env, pwds.pop("admin"))
        wait_for_broker(admin, float(env.get("BROKER_WAIT_S", "120")))
        upsert_users(admin, pwds)
        create_topics(admin, Topics.from_env(env))
        count = create_acls(admin, grants(env))
    except (SetupError, KafkaException) as exc:
        print(f"kafka-init: error: {exc}", file=sys.stderr)
        return 1
    log(f"done: {len(pwds)} users, {count} ACL entries")
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
