"""A run's staging folder: the range's lock, recovery of an interrupted publication, and
on any failure the staging folder removed and the error said once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from replay.exceptions import ReplayFailedError
from replay.fs import STAGING_PREFIX, HadoopFs, join
from replay.plan import ReplayPlan, iso
from streams.aggregate.decode import unknown_id_in

log = logging.getLogger(__name__)


@contextlib.contextmanager
def locked(fs: HadoopFs, plan: ReplayPlan, run_id: str) -> Iterator[None]:
    """The range's lock held, an interrupted publication of it recovered first."""
    fs.mkdirs(fs.root)
    with fs.lock(plan.range_id, run_id):
        fs.recover(plan.range_id)
        yield


def staging_url(fs: HadoopFs, plan: ReplayPlan, run_id: str) -> str:
    return join(fs.root, f"{STAGING_PREFIX}{plan.range_id}-{run_id}")


@contextlib.contextmanager
def discarded_on_failure(fs: HadoopFs, plan: ReplayPlan, staging: str) -> Iterator[None]:
    """Any failure inside: the staging folder removed, then ``ReplayFailedError``."""
    try:
        yield
    except Exception as exc:
        discard(fs, staging)
        if isinstance(exc, ReplayFailedError):
            raise
        raise failed(plan, exc) from exc


def discard(fs: HadoopFs, staging: str) -> None:
    try:
        fs.delete(staging)
    except Exception:  # the original error matters more
        log.exception("could not remove the staging folder path=%s", staging)


def failed(plan: ReplayPlan, exc: BaseException) -> ReplayFailedError:
    """The error of a failed run, saying why in one line."""
    unknown = unknown_id_in(str(exc))
    why = (
        f"a record carries schema id {unknown}, not registered under the topic's subject"
        if unknown is not None
        else f"{type(exc).__name__}: {first_line(exc)}"
    )
    msg = (
        f"replay of [{iso(plan.start)}, {iso(plan.end)}) failed ({why}); "
        "the previous output, if any, is untouched"
    )
    return ReplayFailedError(msg)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
