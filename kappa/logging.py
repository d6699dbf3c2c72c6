"""One logging setup for every entry point: key=value lines on stderr."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not to the
    stream of the first call (a test harness swaps and closes it between runs)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        return


def configure_logging(level: str = "INFO") -> None:
    """Configure the root logger once; later calls only change the level."""
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in (
        "py4j",
        "urllib3",
        "httpx",
        "httpcore",
        "great_expectations",
        "airflow",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
