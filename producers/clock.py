"""Event-time clocks for the generator.

The wall clock stamps each record with the current UTC time. The simulated
clock stamps record ``i`` with ``start + i * speed / rate`` seconds, so that a
run is deterministic for a seed and hours of event time fit in seconds: at
``--rate 1000 --speed 360`` each wall second covers six minutes of event time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def event_time_ms(self, index: int) -> int:
        """Event time, in epoch milliseconds, of the ``index``-th record."""
        ...


class WallClock:
    def event_time_ms(self, index: int) -> int:
        return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class SimulatedClock:
    start: datetime
    speed: float
    rate: float
    _start_ms: int = field(init=False)
    _step_ms: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_start_ms", int(self.start.timestamp() * 1000))
        object.__setattr__(self, "_step_ms", 1000.0 * self.speed / self.rate)

    def event_time_ms(self, index: int) -> int:
        return self._start_ms + int(index * self._step_ms)
