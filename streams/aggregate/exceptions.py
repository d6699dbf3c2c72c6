"""Errors of the aggregation job."""

from kappa.exceptions import KappaError


class AggregateError(KappaError):
    """Something the aggregation job cannot go on with."""


class UnknownSchemaIdError(AggregateError):
    """A record's schema id is in neither the registry nor the job's decoders."""


class SourceUnavailableError(AggregateError):
    """The source topic or its schema subject is not usable."""


class IncompatibleCheckpointError(AggregateError):
    """The checkpoint was written by another shape of the query."""
