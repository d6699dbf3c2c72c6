"""Errors of the replay."""

from kappa.exceptions import KappaError


class ReplayError(KappaError):
    """A replay could not be planned, run or verified."""


class ReversedRangeError(ReplayError):
    """The range is reversed or empty (its end is not after its start)."""


class RangeNotClosedError(ReplayError):
    """The range ends within the lateness margin of now: records for it may still arrive."""


class RangeExpiredError(ReplayError):
    """Part of the range is older than what the topic still holds (retention)."""


class TopicMissingError(ReplayError):
    """The topic to replay does not exist or the broker cannot be reached."""


class ReplayFailedError(ReplayError):
    """The replay job failed; the previous output, if any, is intact."""


class ReplayVerificationError(ReplayError):
    """A replay's output disagrees with the log (counts) or is incomplete (no _SUCCESS)."""


class ParityError(ReplayError):
    """Streaming and replay aggregates could not be compared."""
