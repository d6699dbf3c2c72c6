"""Class-data sharing archives: JVMs of the stack start with less CPU the second time.

An archive of the classes a service loads is written when the first JVM of that
service exits, next to its artifacts (``<deps>/jvm/<component>/.cds/``), and read
by every later start. The JVM checks an archive against its classpath and JDK and
ignores one that does not fit, so a stale archive only costs the speed-up. One
writer at a time: the starter that wins a lock on the archive hands the lock to
the JVM it starts, which holds it until it exits; everybody else starts without
an archive meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

from stack.java import Jdk


@dataclass
class CdsPlan:
    """JVM options for the archive, and the lock fd the JVM must inherit (if writing)."""

    args: list[str] = field(default_factory=list)
    lock_fd: int | None = None

    def release(self) -> None:
        """Close this process's copy of the lock (the JVM keeps its own)."""
        if self.lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.lock_fd)
            self.lock_fd = None


def plan(jdk: Jdk, folder: Path, name: str) -> CdsPlan:
    """Use ``<folder>/.cds/<name>-java<N>.jsa`` if it exists, else try to be the one writing it."""
    cds = folder / ".cds"
    archive = cds / f"{name}-java{jdk.major}.jsa"
    try:
        cds.mkdir(exist_ok=True)
        fd = os.open(cds / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return CdsPlan()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)  # somebody is writing it right now
        return CdsPlan()
    quiet = ["-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
    if archive.exists():
        os.close(fd)
        return CdsPlan([f"-XX:SharedArchiveFile={archive}", *quiet])
    if jdk.major >= 19:
        write = ["-XX:+AutoCreateSharedArchive", f"-XX:SharedArchiveFile={archive}"]
    else:
        write = [f"-XX:ArchiveClassesAtExit={archive}"]
    return CdsPlan([*write, *quiet], lock_fd=fd)
