"""Publication of a range: a new version folder, then the pointer replaced atomically.

Readers follow ``<range>/CURRENT`` once and read that version: during reruns they find
the previous output or the new one, never none and never a mix.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from replay.fs import CURRENT, POINTER_TMP_PREFIX, STAGING_PREFIX, HadoopFs
from replay.published import open_range

pytestmark = [pytest.mark.spark]

RID = "20260101T000000Z_20260101T060000Z"


def staged(root: Path, run_id: str) -> str:
    """A finished staging folder of run ``run_id``: its manifest and ``_SUCCESS``."""
    folder = root / f"{STAGING_PREFIX}{RID}-{run_id}"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"run_id": run_id}))
    (folder / "_SUCCESS").write_text("")
    return folder.resolve().as_uri()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def read_run_id(root: Path) -> str:
    pub = open_range(str(root), RID, lambda: None)
    run_id = json.loads(pub.read_text("manifest.json"))["run_id"]
    assert pub.exists("_SUCCESS"), run_id
    return str(run_id)


def test_each_publication_is_a_version_the_pointer_names(
    spark: SparkSession, tmp_path: Path
) -> None:
    fs = HadoopFs(spark, str(tmp_path))
    assert fs.current(RID) is None
    urls = [fs.publish(staged(tmp_path, run), RID, run) for run in ("a", "b", "c")]

    folder = tmp_path / RID
    assert urls[-1] == f"{fs.root}/{RID}/run-c"
    assert fs.current(RID) == urls[-1]
    assert (folder / CURRENT).read_text() == "run-c\n"
    assert read_run_id(tmp_path) == "c"
    # The current version and the one before it; older ones and the staging folders gone.
    assert names(folder) == [CURRENT, "run-b", "run-c"]
    assert names(tmp_path) == [RID]


def test_an_output_from_before_pointers_is_read_then_replaced(
    spark: SparkSession, tmp_path: Path
) -> None:
    folder = tmp_path / RID
    (folder / "cdr").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"run_id": "old"}))
    (folder / "_SUCCESS").write_text("")
    fs = HadoopFs(spark, str(tmp_path))
    assert fs.current(RID) == f"{fs.root}/{RID}"
    assert read_run_id(tmp_path) == "old"

    fs.publish(staged(tmp_path, "new"), RID, "new")
    assert read_run_id(tmp_path) == "new"
    assert names(folder) == [CURRENT, "run-new"]


def test_readers_never_find_the_range_missing_while_it_is_republished(
    spark: SparkSession, tmp_path: Path
) -> None:
    fs = HadoopFs(spark, str(tmp_path))
    fs.publish(staged(tmp_path, "r000"), RID, "r000")
    seen: set[str] = set()
    failures: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.add(read_run_id(tmp_path))
            except Exception as exc:  # the point of the test: none may happen
                failures.append(f"{type(exc).__name__}: {exc}")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        for i in range(1, 41):
            run = f"r{i:03d}"
            fs.publish(staged(tmp_path, run), RID, run)
            time.sleep(0.02)
    finally:
        done.set()
        for r in readers:
            r.join()
    assert failures == []
    assert len(seen) > 10  # the readers saw the reruns go by
    assert read_run_id(tmp_path) == "r040"


def test_recovery_removes_an_unnamed_version_and_a_half_written_pointer(
    spark: SparkSession, tmp_path: Path
) -> None:
    fs = HadoopFs(spark, str(tmp_path))
    fs.publish(staged(tmp_path, "a"), RID, "a")
    folder = tmp_path / RID
    # A crash after the move and before the pointer's swap, and one while writing it.
    (folder / "run-z").mkdir()
    (folder / f"{POINTER_TMP_PREFIX}z").write_text("run-z\n")
    staging = Path(staged(tmp_path, "y").removeprefix("file://"))

    fs.recover(RID)
    assert names(folder) == [CURRENT, "run-a"]
    assert not staging.exists()
    assert read_run_id(tmp_path) == "a"


def test_the_readme_s_reading_example_reads_the_current_version(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    (example,) = [
        b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "CURRENT" in b
    ]
    root = tmp_path / ".kappa" / "replay"
    fs = HadoopFs(spark, str(root))
    for run, revenue in (("old", 1.0), ("new", 2.0)):
        url = staged(root, run)
        folder = Path(url.removeprefix("file://")) / "billing_report"
        folder.mkdir()
        table = pa.table({"caller_num": ["+100"], "revenue": [revenue]})
        pq.write_table(table, folder / "part-0.parquet")
        fs.publish(url, RID, run)
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), scope)  # the README's own example
    assert scope["root"] == Path(".kappa/replay") / RID / "run-new"
