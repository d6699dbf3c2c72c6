"""A ``kappa`` command as a subprocess, the way the chaos test and ``bench/e2e`` drive the pipeline.

Each command runs in its own process group (a driver and any JVM it starts), logs to
``<name>.out`` (stdout) and ``<name>.log`` (stderr), stops its work cleanly at SIGTERM,
and is killed whole with SIGKILL to its group. It is reaped only here, so the kernel's
account of its CPU (``exit_cpu_s``: the command and its reaped children) is known.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from stack.layout import repo_root

KAPPA = str(Path(sys.executable).with_name("kappa"))


def _cpu_of(usage: resource.struct_rusage) -> float:
    return float(usage.ru_utime + usage.ru_stime)


class KappaProc:
    """``kappa <args>`` with ``env``, logged under ``folder``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.out = folder / f"{name}.out"
        self.log = folder / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.started = 0.0  # wall-clock time of the start
        self.exit_cpu_s: float | None = None

    def start(self) -> Self:
        with self.out.open("ab") as out, self.log.open("ab") as err:
            self.started = time.time()
            self.popen = subprocess.Popen(
                [KAPPA, *self.args],
                env=self.env,
                cwd=repo_root(),
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def reap(self, timeout: float | None) -> int | None:
        """Wait at most ``timeout`` seconds (None: only look); the exit status or None."""
        if self.popen is None:
            return None
        if self.popen.returncode is not None:
            return self.popen.returncode
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            code = self.popen.poll() if timeout is None else self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if code is not None:
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.exit_cpu_s = _cpu_of(after) - _cpu_of(before)
        return code

    def poll(self) -> int | None:
        return self.reap(None)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return (
            f"--- {self.name} stdout\n{self.stdout()[-chars:]}\n"
            f"--- {self.name} stderr\n{self.text()[-chars:]}"
        )

    def send_term(self) -> None:
        """SIGTERM to the command itself: it finishes its work in flight and stops."""
        if self.running:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> int | None:
        """The exit status within ``timeout`` seconds, else SIGKILL to the group and None."""
        if self.popen is None:
            return None
        code = self.reap(max(timeout, 0.0))
        if code is None:
            self.kill()
        return code

    def kill(self) -> None:
        """SIGKILL to the whole process group: the command and any JVM it started."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.reap(60.0)

    def dump_stacks(self) -> None:
        """Ask the command for every thread's Python stack (``kappa`` prints them on
        stderr at SIGUSR1): where it waits, when it seems stuck."""
        if self.running:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGUSR1)
            time.sleep(1.0)
