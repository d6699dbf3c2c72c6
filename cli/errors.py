"""What a failure that escaped its command means to the user, in one line.

Commands turn the failures they expect into ``KappaError`` where they happen.
A service that stops answering can surface anywhere (a client library deep in
a call), so the few kinds that only mean "that service is not there" are
recognised here, once, whatever raised them: the Schema Registry (httpx transport
errors), Kafka (librdkafka transport errors), HDFS or a Spark master (Java's
``ConnectException`` through py4j) and a JVM that did not start.
"""

from __future__ import annotations

import httpx
from confluent_kafka import KafkaError, KafkaException

from kappa.clients import kafka_unreachable, registry_unreachable
from kappa.exceptions import EXIT_UNREACHABLE, KappaError, ServiceUnreachableError
from kappa.settings import KafkaSettings, RegistrySettings
from streams import spark_errors

_KAFKA_DOWN = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
}


class SparkDidNotStartError(KappaError):
    """The JVM of Spark exited before it could be used."""

    exit_code = EXIT_UNREACHABLE


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def explain(exc: BaseException) -> KappaError | None:
    """A one-line error for ``exc`` (or anything in its cause chain), if it only
    says that a service is unreachable; ``None`` for anything else."""
    for err in _chain(exc):
        if isinstance(err, httpx.TransportError):
            return registry_unreachable(_setting(RegistrySettings, "url"), err)
        if isinstance(err, KafkaException) and err.args:
            first = err.args[0]
            if isinstance(first, KafkaError) and first.code() in _KAFKA_DOWN:
                return kafka_unreachable(_setting(KafkaSettings, "bootstrap"), err)
        if spark_errors.gateway_exited(err):
            return SparkDidNotStartError(
                "Spark's JVM exited while starting; check the Spark master (--master), "
                "JAVA_HOME and the log lines above"
            )
        java = spark_errors.java_unreachable(err)
        if java is not None:
            return ServiceUnreachableError(
                "HDFS" if java.hdfs else "a service",
                java.address,
                java.cause,
                "check the URL of the HDFS output or checkpoint, or the Spark master, "
                "and that the service is running (`kappa stack status`)",
            )
    return None


def _setting(cls: type[KafkaSettings] | type[RegistrySettings], name: str) -> str:
    try:
        return str(getattr(cls(), name))
    except Exception:  # the settings themselves are invalid: say so elsewhere
        return "the configured address"
