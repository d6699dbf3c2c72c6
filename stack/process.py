"""A small process supervisor: pid files, log files, health waits, clean stops.

Every process it starts carries a marker on its command line (for a JVM,
``-Dkappa.service=<name>@<state dir>``); a pid file is believed only when the
process behind it still has that marker, so a recycled pid or somebody else's
JVM is never signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stack.cds import CdsPlan
from stack.exceptions import ServiceStartError, ServiceStopError

log = logging.getLogger(__name__)

# Children started by this Python process, kept so they are reaped (no zombies)
# and so that Popen does not warn about them on garbage collection.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one long-lived process."""

    name: str
    argv: Sequence[str]
    marker: str
    cwd: Path
    env: Mapping[str, str] | None = field(default=None)
    cds: CdsPlan | None = field(default=None)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover (runs in the child between fork and exec)
    """Ask Linux to SIGTERM this process when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def jvm_marker(name: str, state_dir: Path) -> str:
    """The system property that tags a JVM of this stack."""
    return f"-Dkappa.service={name}@{state_dir}"


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


_PF_KTHREAD = 0x00200000


def _kernel_thread(pid: int) -> bool:
    """Whether ``pid`` is a kernel thread (its command line is empty too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    flags = int(stat.rsplit(")", 1)[-1].split()[6])
    return bool(flags & _PF_KTHREAD)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count; our own zombies are reaped)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


class Supervisor:
    """Starts, finds and stops the processes of one state directory."""

    def __init__(self, state_dir: Path, *, die_with_parent: bool = False) -> None:
        """``die_with_parent``: the processes started get SIGTERM when this Python process
        dies, even by SIGKILL (for test sessions; ``kappa stack up`` leaves them running)."""
        self.state_dir = state_dir
        self.die_with_parent = die_with_parent
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The pid of our running ``name``, or None (a stale pid file is removed)."""
        path = self.pid_file(name)
        try:
            record = json.loads(path.read_text())
            pid, marker = int(record["pid"]), str(record["marker"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not alive(pid):
            log.debug("stale pid file service=%s pid=%s (not running)", name, pid)
            path.unlink(missing_ok=True)
            return None
        if pid in _CHILDREN:  # started by this process: ours whatever /proc says yet
            return pid
        cmdline = _cmdline(pid)
        if cmdline is not None and marker in cmdline:
            return pid
        if cmdline == "" and not _kernel_thread(pid):
            # A process in the middle of exec shows an empty command line until the
            # kernel has set up its arguments: not known to be another one, keep it.
            return pid
        log.debug("stale pid file service=%s pid=%s (another process)", name, pid)
        path.unlink(missing_ok=True)
        return None

    def start(self, spec: ServiceSpec) -> int:
        """Start ``spec`` in its own session, output appended to its log file."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_file(spec.name)
        started = datetime.now(UTC)
        lock_fd = spec.cds.lock_fd if spec.cds is not None else None
        try:
            with logfile.open("ab") as out:
                out.write(f"--- {started.isoformat()} starting {spec.name}\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    list(spec.argv),
                    cwd=spec.cwd,
                    env=dict(spec.env) if spec.env is not None else None,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    # the JVM writing a class-data archive holds its lock until it exits
                    pass_fds=(lock_fd,) if lock_fd is not None else (),
                    preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509
                )
        finally:
            if spec.cds is not None:
                spec.cds.release()
        _CHILDREN[proc.pid] = proc
        record = {"pid": proc.pid, "marker": spec.marker, "started_at": started.isoformat()}
        self.pid_file(spec.name).write_text(json.dumps(record) + "\n")
        log.info("started service=%s pid=%d log=%s", spec.name, proc.pid, logfile)
        return proc.pid

    def wait_healthy(
        self, name: str, healthy: Callable[[], bool], timeout_s: float, interval_s: float = 0.25
    ) -> float:
        """Poll ``healthy`` until true; the seconds waited.

        Raises when the process dies or time runs out.
        """
        began = time.monotonic()
        deadline = began + timeout_s
        while True:
            if healthy():
                return time.monotonic() - began
            if self.pid(name) is None:
                msg = f"{name} exited while starting; see {self.log_file(name)}{self._tail(name)}"
                raise ServiceStartError(msg)
            if time.monotonic() > deadline:
                msg = (
                    f"{name} did not answer within {timeout_s:.0f} s; "
                    f"see {self.log_file(name)}{self._tail(name)}"
                )
                raise ServiceStartError(msg)
            time.sleep(interval_s)

    def stop(self, name: str, grace_s: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; waits until gone. The pid stopped, or None."""
        pid = self.pid(name)
        if pid is None:
            self.pid_file(name).unlink(missing_ok=True)
            return None
        log.info("stopping service=%s pid=%d", name, pid)
        self._signal(pid, signal.SIGTERM)
        if not self._wait_gone(pid, grace_s):
            log.warning("service=%s pid=%d ignored SIGTERM for %.0f s; killing", name, pid, grace_s)
            self._signal(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 10.0):
                msg = f"{name} (pid {pid}) is still running after SIGKILL"
                raise ServiceStopError(msg)
        self.pid_file(name).unlink(missing_ok=True)
        return pid

    def stop_all(self, names: Sequence[str], grace_s: float = 60.0) -> list[str]:
        """``stop`` several at once: SIGTERM to all, then wait; the names stopped.

        Nodes of a quorum shut down side by side: one by one, the last would wait
        for a quorum that has gone.
        """
        running = {name: pid for name in names if (pid := self.pid(name)) is not None}
        for name in names:
            if name not in running:
                self.pid_file(name).unlink(missing_ok=True)
        for name, pid in running.items():
            log.info("stopping service=%s pid=%d", name, pid)
            self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        stuck: list[str] = []
        for name, pid in running.items():
            if not self._wait_gone(pid, max(0.0, deadline - time.monotonic())):
                log.warning("service=%s pid=%d ignored SIGTERM; killing", name, pid)
                self._signal(pid, signal.SIGKILL)
                if not self._wait_gone(pid, 10.0):
                    stuck.append(f"{name} (pid {pid})")
                    continue
            self.pid_file(name).unlink(missing_ok=True)
        if stuck:
            msg = f"still running after SIGKILL: {', '.join(stuck)}"
            raise ServiceStopError(msg)
        return list(running)

    def kill(self, name: str) -> int | None:
        """SIGKILL ``name`` and its process group at once (a crash, for chaos tests);
        waits until gone. The pid killed, or None when it was not running."""
        pid = self.pid(name)
        if pid is None:
            return None
        log.warning("killing service=%s pid=%d", name, pid)
        self._signal(pid, signal.SIGKILL)
        if not self._wait_gone(pid, 10.0):
            msg = f"{name} (pid {pid}) is still running after SIGKILL"
            raise ServiceStopError(msg)
        self.pid_file(name).unlink(missing_ok=True)
        return pid

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            # Started with start_new_session: the JVM leads its own process group.
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    @staticmethod
    def _wait_gone(pid: int, timeout_s: float) -> bool:
        child = _CHILDREN.get(pid)
        if child is not None:
            try:
                child.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            _CHILDREN.pop(pid, None)
            return True
        deadline = time.monotonic() + timeout_s
        while alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _tail(self, name: str, lines: int = 8) -> str:
        try:
            text = self.log_file(name).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        tail = [line for line in text[-lines:] if line.strip()]
        return ("\n  " + "\n  ".join(tail)) if tail else ""
