"""Errors of the streaming jobs that are not one job's own: the Spark session's."""

from kappa.exceptions import EXIT_BAD_SETTING, KappaError


class ConnectorJarsMissingError(KappaError):
    """The Spark Kafka/Avro connector jars are not installed."""


class BadSettingError(KappaError):
    """A flag or setting of a streaming job is invalid (the message names it)."""

    exit_code = EXIT_BAD_SETTING
