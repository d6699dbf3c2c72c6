"""Errors of the replay."""

from kappa.exceptions import KappaError
from replay.lockfile import LockHolder


class ReplayError(KappaError):
    """A replay could not be planned, run or verified."""


class ReversedRangeError(ReplayError):
    """The range is reversed or empty (its end is not after its start)."""


class RangeNotClosedError(ReplayError):
    """The range ends within the lateness margin of now: records for it may still arrive."""


class RangeExpiredError(ReplayError):
    """Part of the range is older than what the topic still holds (retention)."""


class PlanningError(ReplayError):
    """The broker answered but could not say which offsets hold the range of ``topic``."""

    def __init__(self, topic: str, bootstrap: str, cause: str) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.cause = cause
        super().__init__(f"could not plan the replay of {topic} at {bootstrap}: {cause}")


class ReplayFailedError(ReplayError):
    """The replay job failed; the previous output, if any, is intact."""


class ReplayVerificationError(ReplayError):
    """A replay's output disagrees with the log (counts) or is incomplete (no _SUCCESS)."""


class ParityError(ReplayError):
    """Streaming and replay aggregates could not be compared."""


class RangeLockedError(ReplayError):
    """Another replay of the same range holds its lock (``holder``: what it wrote)."""

    def __init__(self, lock: str, holder: LockHolder) -> None:
        self.lock = lock
        self.holder = holder
        super().__init__(
            f"another replay of this range is running (run {holder.run_id} on "
            f"{holder.host}, pid {holder.pid}, since {holder.started}); "
            f"wait for it, or delete {lock} if that run is dead"
        )
