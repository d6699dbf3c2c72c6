"""Errors of the producers."""

from kappa.exceptions import KappaError


class ProducerError(KappaError):
    """Records could not be produced."""


class BadOptionError(ProducerError):
    """An option of ``kappa produce`` is out of range or inconsistent."""
