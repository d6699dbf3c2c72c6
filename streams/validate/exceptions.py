"""Errors of the validator and its tools."""

from kappa.exceptions import KappaError


class ValidatorError(KappaError):
    """Something the validator cannot carry on from."""


class ValidatorFencedError(ValidatorError):
    """Another instance with the same transactional.id took over."""


class BadRuleNameError(ValidatorError):
    """A rule name that is not one of schemas.rules."""


class PartitionCountMismatchError(ValidatorError):
    """The internal ``topic`` has ``have`` partitions where the valid topic has ``want``."""

    def __init__(self, topic: str, have: int, want: int) -> None:
        self.topic = topic
        self.have = have
        self.want = want
        super().__init__(
            f"internal topic {topic} has {have} partitions, the valid topic {want}; "
            "delete it (no judged record is lost: its offsets were committed) or match them"
        )


class SuiteError(ValidatorError):
    """The expectation suite could not run."""
