"""What a range's lock file says about the run holding it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LockHolder:
    """The run holding a range's lock: its id, host, pid and start (ISO-8601), each
    unknown (None) when the file does not say."""

    run_id: str | None = None
    host: str | None = None
    pid: int | None = None
    started: str | None = None

    def to_json(self) -> str:
        """The lock file's text (one JSON object, one line)."""
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockHolder:
        pid = d.get("pid")
        return cls(
            run_id=d.get("run_id"),
            host=d.get("host"),
            pid=int(pid) if isinstance(pid, int | str) and str(pid).isdigit() else None,
            started=d.get("started"),
        )

    @classmethod
    def from_json(cls, text: str) -> LockHolder:
        """The holder a lock file names; an unknown one when it is not a JSON object."""
        try:
            found = json.loads(text)
        except ValueError:
            return cls()
        return cls.from_dict(found) if isinstance(found, dict) else cls()
