"""Errors of the embedded local stack."""

from __future__ import annotations

from kappa.exceptions import KappaError


class StackError(KappaError):
    """The embedded local stack could not do what was asked."""


class JavaNotFoundError(StackError):
    """No suitable Java runtime was found."""


class ArtifactsMissingError(StackError):
    """The JVM artifacts of a service have not been installed."""


class PortInUseError(StackError):
    """A port the stack needs is held by another process."""


class ServiceStartError(StackError):
    """A service exited, or did not answer in time, while starting."""


class ServiceStopError(StackError):
    """A service did not exit even after SIGKILL."""


class MonitoringUnavailableError(StackError):
    """Prometheus or its configuration is missing."""


class TopicCreationError(StackError):
    """Kafka refused to create a topic."""
