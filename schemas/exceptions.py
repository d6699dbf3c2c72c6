"""Errors of the schema layer."""

from kappa.exceptions import KappaError


class SchemaError(KappaError):
    """A schema could not be loaded or registered."""


class IncompatibleSchemaError(SchemaError):
    """The registry refused a schema as incompatible with the subject's history."""
