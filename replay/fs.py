"""Files through Hadoop's FileSystem (the JVM's, via Spark): ``file://`` and ``hdfs://`` alike.

The output of a range is published by renaming a finished staging folder over
it, so that readers see the previous output or the new one, never a half-written
one. Folders whose names start with ``_`` are hidden from Spark and Hadoop readers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGING_PREFIX = "_staging-"
REPLACED_PREFIX = "_replaced-"


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
