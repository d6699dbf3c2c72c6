"""The embedded local stack: Kafka (KRaft), Apicurio Registry, and optionally HDFS and
Prometheus, as local processes started from artifacts of the install step."""

from __future__ import annotations

from stack.stack import LocalStack, ServiceStatus

__all__ = ["LocalStack", "ServiceStatus"]
