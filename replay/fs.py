"""Files through Hadoop's FileSystem (the JVM's, via Spark): ``file://`` and ``hdfs://`` alike.

A range's output is published as a new version folder, ``<root>/<range id>/run-<run id>/``,
and the range's pointer file, ``<root>/<range id>/CURRENT``, names the version readers
read: a finished version is moved in next to the current one, then the pointer is
replaced in one atomic step (``rename(2)`` on a local disk, the NameNode's rename with
overwrite on HDFS). A reader that follows the pointer sees the previous output or the
new one, whole, never a half-written one and never none; the version it resolved stays
until the publication after next (the current and the previous version are kept). A run
holds the range's lock file (``_lock-<range id>``, created atomically) from its recovery
of a crashed run's leftovers to its publication: a second replay of the same range,
manual or scheduled, is refused rather than deleting the first's staging folder.
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
VERSION_PREFIX = "run-"
CURRENT = "CURRENT"
"""The pointer file of a range: the name of its current version folder, on one line."""
POINTER_TMP_PREFIX = "_CURRENT.tmp-"


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
        self._gateway: Any = spark.sparkContext._gateway
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

    def current(self, name: str) -> str | None:
        """The URL of range ``name``'s current version; None when it has no published output.

        A range published before pointers existed (its files directly in the range's
        folder) is its own current version.
        """
        folder = join(self.root, name)
        pointer = join(folder, CURRENT)
        if self.exists(pointer):
            return join(folder, self.read_text(pointer).strip())
        if self.exists(join(folder, "manifest.json")) or self.exists(join(folder, "_SUCCESS")):
            return folder
        return None

    def recover(self, name: str) -> None:
        """Undo what a crashed run of ``name`` left behind under the root.

        A staging folder is deleted; so are a version the pointer does not name yet
        (the crash fell between the move and the pointer's swap) and a half-written
        pointer. A folder set aside by the two-rename swap of earlier releases is put
        back when the range has no output, deleted otherwise.
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
        if self.exists(join(target, CURRENT)):
            self._prune(name)

    def publish(self, staging: str, name: str, run_id: str) -> str:
        """Publish the finished ``staging`` folder as range ``name``'s current version.

        The folder moves to ``<root>/<name>/run-<run_id>`` (invisible to readers, who
        follow the pointer), the pointer is replaced atomically, then versions older
        than the previous one are deleted. Returns the new version's URL.
        """
        folder = join(self.root, name)
        version = f"{VERSION_PREFIX}{run_id}"
        url = join(folder, version)
        self.mkdirs(folder)
        if not self.rename(staging, url):
            msg = f"could not rename {staging} to {url}"
            raise OSError(msg)
        self._point(folder, version, run_id)
        self._prune(name)
        return url

    def _point(self, folder: str, version: str, run_id: str) -> None:
        """Replace ``<folder>/CURRENT`` with one naming ``version``, atomically."""
        pointer = join(folder, CURRENT)
        tmp = join(folder, f"{POINTER_TMP_PREFIX}{run_id}")
        if urlparse(pointer).scheme == "file":
            # Python's own files: no Hadoop checksum file beside them to go stale.
            staged = Path(unquote(urlparse(tmp).path))
            staged.write_text(f"{version}\n", encoding="utf-8")
            os.replace(staged, Path(unquote(urlparse(pointer).path)))
            return
        self.write_text(tmp, f"{version}\n")
        hadoop = self._jvm.org.apache.hadoop.fs
        context = hadoop.FileContext.getFileContext(self._fs.getUri(), self._conf)
        options = self._gateway.new_array(hadoop.Options.Rename, 1)
        options[0] = hadoop.Options.Rename.OVERWRITE
        context.rename(self._path(tmp), self._path(pointer), options)

    def _prune(self, name: str) -> None:
        """Keep the pointer, the current version and the one before it; delete the rest
        of the range's folder (older versions, a pre-pointer layout's files, leftovers)."""
        folder = join(self.root, name)
        current = self.read_text(join(folder, CURRENT)).strip()
        versions = [
            c for c in self.children(folder) if c.startswith(VERSION_PREFIX) and c < current
        ]
        keep = {CURRENT, current, *versions[-1:]}
        for child in self.children(folder):
            if child not in keep:
                self.delete(join(folder, child))
