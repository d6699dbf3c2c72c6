"""Read a published replay without Spark: the manifest, ``_SUCCESS`` and ``cdr/``'s row count.

Readers follow the range's pointer (``<root>/<range id>/CURRENT``, see ``replay.fs``)
once, then read every file from the version it names: a rerun publishing meanwhile
neither hides the range nor mixes two versions' files.

A replay's output is small to check: one JSON file, one marker, and the row
count of ``cdr/``, which Parquet keeps in its footers. Under a local path or a
``file://`` URL these are plain file reads and pyarrow; only an ``hdfs://`` (or
other Hadoop) URL needs Hadoop's FileSystem, reached through a Spark session
that is started then, not before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from replay.fs import CURRENT, join, normalize
from replay.manifest import Manifest


class PublishedRange(Protocol):
    """The files of one published range, ``<root>/<range id>/``."""

    url: str

    def exists(self, name: str) -> bool: ...

    def read_text(self, name: str) -> str: ...

    def parquet_rows(self, name: str) -> int: ...


class LocalRange:
    """A range under a local path: plain reads, row counts from the Parquet footers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(unquote(urlparse(url).path))

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def read_text(self, name: str) -> str:
        return (self.path / name).read_text(encoding="utf-8")

    def parquet_rows(self, name: str) -> int:
        import pyarrow.dataset as ds

        # Hidden files (_SUCCESS, .crc, _staging) are skipped, as Spark skips them.
        dataset = ds.dataset(self.path / name, format="parquet", partitioning="hive")
        return int(dataset.count_rows())


class HadoopRange:
    """A range at any Hadoop URL, through a Spark session's FileSystem."""

    def __init__(self, url: str, spark: Any) -> None:
        from replay.fs import HadoopFs

        self.url = url
        self._spark = spark
        self._fs = HadoopFs(spark, url)

    def exists(self, name: str) -> bool:
        return self._fs.exists(join(self.url, name))

    def read_text(self, name: str) -> str:
        return self._fs.read_text(join(self.url, name))

    def parquet_rows(self, name: str) -> int:
        return int(self._spark.read.parquet(join(self.url, name)).count())


def is_local(url: str) -> bool:
    return urlparse(normalize(url)).scheme == "file"


def open_range(root: str, range_id: str, spark: Callable[[], Any]) -> PublishedRange:
    """The current version of range ``range_id`` under ``root`` (the range's folder when it
    has none); ``spark()`` is called only for Hadoop."""
    url = join(normalize(root), range_id)
    if is_local(url):
        return LocalRange(local_current(url))
    from replay.fs import HadoopFs

    session = spark()
    return HadoopRange(HadoopFs(session, root).current(range_id) or url, session)


def local_current(url: str) -> str:
    """The version a local range's pointer names (the range's folder without a pointer)."""
    pointer = Path(unquote(urlparse(url).path)) / CURRENT
    try:
        return join(url, pointer.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        return url


def read_manifest(published: PublishedRange, name: str) -> Manifest | None:
    """The manifest with its ``path``, or None when the range has none."""
    if not published.exists(name):
        return None
    return Manifest.from_json(published.read_text(name), path=published.url)
