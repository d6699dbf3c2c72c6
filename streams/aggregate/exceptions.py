"""Errors of the aggregation job."""

from kappa.exceptions import EXIT_BAD_SETTING, KappaError


class AggregateError(KappaError):
    """Something the aggregation job cannot go on with."""


class ConnectorJarsMissingError(AggregateError):
    """The Spark Kafka/Avro connector jars are not installed."""


class BadSettingError(AggregateError):
    """A flag or setting of the aggregation job is invalid."""

    exit_code = EXIT_BAD_SETTING


class UnknownSchemaIdError(AggregateError):
    """A record's schema id is in neither the registry nor the job's decoders."""


class SourceUnavailableError(AggregateError):
    """The source topic or its schema subject is not usable."""


class IncompatibleCheckpointError(AggregateError):
    """The checkpoint was written by another shape of the query."""
