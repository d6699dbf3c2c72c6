"""Files through Hadoop's FileSystem (the JVM's, via Spark): ``file://`` and ``hdfs://`` alike.

The output of a range is published by renaming a finished staging folder over
it, so that readers see the previous output or the new one, never a half-written
one. Folders whose names start with ``_`` are hidden from Spark and Hadoop readers.
A run holds the range's lock file (``_lock-<range id>``, created atomically) from
its recovery of a crashed run's leftovers to its publication: a second replay of
the same range, manual or scheduled, is refused rather than deleting the first's
staging folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pyspark.sql import SparkSession

from replay.exceptions import RangeLockedError
from replay.lockfile import LockHolder
from streams import spark_errors

log = logging.getLogger(__name__)

STAGING_PREFIX = "_staging-"
REPLACED_PREFIX = "_replaced-"
LOCK_PREFIX = "_lock-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def normalize(url: str) -> str:
    """A local path becomes an absolute ``file://`` URL; URLs stay as they are."""
    if "://" in url or url.startswith("file:"):
        return url.rstrip("/")
    return Path(url).expanduser().resolve().as_uri()


def is_hdfs(url: str) -> bool:
    return urlparse(url).scheme == "hdfs"


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


class HadoopFs:
    """The Hadoop FileSystem of ``root``, through the Spark session's JVM."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        jvm: Any = spark.sparkContext._jvm
        self._jvm = jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
        self.root = normalize(root)
        self._fs = self._path(self.root).getFileSystem(self._conf)

    def _path(self, url: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(url)

    def exists(self, url: str) -> bool:
        return bool(self._fs.exists(self._path(url)))

    def mkdirs(self, url: str) -> None:
        self._fs.mkdirs(self._path(url))

    def delete(self, url: str) -> None:
        if self.exists(url):
            self._fs.delete(self._path(url), True)

    def rename(self, src: str, dst: str) -> bool:
        return bool(self._fs.rename(self._path(src), self._path(dst)))

    def children(self, url: str) -> list[str]:
        if not self.exists(url):
            return []
        return sorted(str(st.getPath().getName()) for st in self._fs.listStatus(self._path(url)))

    def write_text(self, url: str, text: str) -> None:
        out = self._fs.create(self._path(url), True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()

    def read_text(self, url: str) -> str:
        stream = self._fs.open(self._path(url))
        try:
            data = self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
        finally:
            stream.close()
        return bytes(data).decode("utf-8")

    # -- one replay per range at a time ---------------------------------------------------

    def _create_new(self, url: str, text: str) -> bool:
        """Create ``url`` with ``text`` if it does not exist, atomically; False if it did."""
        parsed = urlparse(url)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            return True
        # HDFS: the NameNode creates a file or refuses, atomically.
        self.mkdirs(url.rsplit("/", 1)[0])
        try:
            out = self._fs.create(self._path(url), False)
        except Exception as exc:
            if spark_errors.file_exists(exc):
                return False
            raise
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        return True

    @contextlib.contextmanager
    def lock(self, name: str, run_id: str) -> Iterator[str]:
        """Hold ``<root>/_lock-<name>`` (a hidden file, gone when released) while the block runs.

        A second replay of the same range, manual or scheduled, is refused with
        ``RangeLockedError`` instead of deleting the first one's staging folder. A
        lock left by a dead process of this host is taken over; one from another
        host is reported with how to remove it.
        """
        url = join(self.root, f"{LOCK_PREFIX}{name}")
        me = LockHolder(
            run_id=run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if not self._create_new(url, me.to_json()):
            holder = self._holder(url)
            stale = holder.host == me.host and not _alive(holder.pid or 0)
            if not stale:
                raise RangeLockedError(url, holder)
            log.warning("taking over the lock of a dead replay path=%s holder=%s", url, holder)
            self.delete(url)
            if not self._create_new(url, me.to_json()):
                raise RangeLockedError(url, self._holder(url))
        try:
            yield url
        finally:
            if self._holder(url).run_id == run_id:
                self.delete(url)

    def _holder(self, url: str) -> LockHolder:
        try:
            text = self.read_text(url)
        except Exception:  # vanished or unreadable: nothing to say about its holder
            return LockHolder()
        return LockHolder.from_json(text)

    # -- publishing -------------------------------------------------------------------------

    def recover(self, name: str) -> None:
        """Undo what a crashed run of ``name`` left behind under the root.

        A staging folder is deleted. A replaced folder is put back when the
        target is missing (the crash fell between the two renames of
        ``publish``), deleted otherwise.
        """
        target = join(self.root, name)
        for child in self.children(self.root):
            url = join(self.root, child)
            if child.startswith(f"{STAGING_PREFIX}{name}-"):
                log.warning("removing the staging folder of an unfinished replay path=%s", url)
                self.delete(url)
            elif child.startswith(f"{REPLACED_PREFIX}{name}-"):
                if not self.exists(target) and self.rename(url, target):
                    log.warning(
                        "restored the previous output of an interrupted swap path=%s", target
                    )
                else:
                    self.delete(url)

    def publish(self, staging: str, name: str, run_id: str) -> str:
        """Swap the finished ``staging`` folder in as ``<root>/<name>``; return its URL."""
        target = join(self.root, name)
        replaced = join(self.root, f"{REPLACED_PREFIX}{name}-{run_id}")
        had_previous = self.exists(target)
        if had_previous and not self.rename(target, replaced):
            msg = f"could not move the previous output {target} aside"
            raise OSError(msg)
        if not self.rename(staging, target):
            if had_previous:
                self.rename(replaced, target)
            msg = f"could not rename {staging} to {target}"
            raise OSError(msg)
        if had_previous:
            self.delete(replaced)
        return target
