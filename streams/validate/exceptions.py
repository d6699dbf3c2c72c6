"""Errors of the validator and its tools."""

from kappa.exceptions import KappaError


class ValidatorError(KappaError):
    """Something the validator cannot carry on from."""


class ValidatorFencedError(ValidatorError):
    """Another instance with the same transactional.id took over."""


class BadRuleNameError(ValidatorError):
    """A rule name that is not one of schemas.rules."""


class TopicMissingError(ValidatorError):
    """A topic the validator needs does not exist."""


class SuiteError(ValidatorError):
    """The expectation suite could not run."""
