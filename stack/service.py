"""What every service of the local stack offers to the orchestration."""

from __future__ import annotations

from typing import Protocol

from stack.process import ServiceSpec


class Service(Protocol):
    """One process of the stack."""

    name: str

    @property
    def port(self) -> int | None:
        """The port users connect to (shown by ``status``)."""

    @property
    def ports(self) -> dict[str, int]:
        """Fixed ports it binds, by purpose; checked free before starting."""

    def url(self) -> str | None:
        """How to reach it (bootstrap or URL)."""

    def check(self) -> None:
        """Raise when it cannot start: artifacts, runtime, configuration."""

    def prepare(self) -> None:
        """Render its configuration and format its storage on first start."""

    def spec(self) -> ServiceSpec:
        """The process to run."""

    def healthy(self) -> bool:
        """Whether it answers as it should (quick; never raises)."""
