"""The one SparkSession of a process, built from settings.

Local mode by default (``local[2]``: this project targets two cores), few
shuffle partitions, UTC session time zone, the venv's Python for workers, the
UI off (no fixed ports), everything bound to loopback in local mode, and the
Kafka and Avro connectors taken from ``.deps/jvm/spark/*.jar`` (resolved by
``make install``), never downloaded at run time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from kappa.settings import AggregateSettings, StackSettings
from streams.exceptions import BadSettingError, ConnectorJarsMissingError

log = logging.getLogger(__name__)

MASTER_FORMS = re.compile(
    r"local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]"
    r"|spark://[^\s/:,]+:\d+(,[^\s/:,]+:\d+)*|yarn|k8s://\S+"
)
REQUIRED_JARS = ("spark-sql-kafka-0-10_2.13-", "spark-avro_2.13-")
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def spark_deps_dir(stack: StackSettings) -> Path:
    """``<deps_dir>/jvm/spark``; a relative deps_dir is tried from the cwd, then the project."""
    deps = stack.deps_dir
    if not deps.is_absolute() and not (deps / "jvm" / "spark").is_dir():
        candidate = _PROJECT_ROOT / deps
        if (candidate / "jvm" / "spark").is_dir():
            deps = candidate
    return (deps / "jvm" / "spark").resolve()


def connector_jars(stack: StackSettings) -> list[Path]:
    """Every jar of the Spark connectors; a clear error if the install step has not run."""
    folder = spark_deps_dir(stack)
    jars = sorted(folder.glob("*.jar")) if folder.is_dir() else []
    names = [j.name for j in jars]
    missing = [p.rstrip("-") for p in REQUIRED_JARS if not any(n.startswith(p) for n in names)]
    if missing:
        msg = (
            f"the Spark connector jars {', '.join(missing)} are not in {folder}; "
            "run `make install` (it resolves them from Maven Central) and retry"
        )
        raise ConnectorJarsMissingError(msg)
    return jars


def stable_copies(jars: list[Path]) -> list[Path]:
    """The jars copied to a content-addressed folder that nothing rewrites.

    The JVM reads a jar again long after start-up (service loaders, classes loaded
    late); ``make install`` re-resolving ``.deps`` under a running job would
    otherwise pull the files from under it.
    """
    digest = hashlib.sha256()
    for jar in jars:
        digest.update(jar.name.encode())
        digest.update(jar.read_bytes())
    folder = Path(tempfile.gettempdir()) / f"kappa-spark-jars-{digest.hexdigest()[:16]}"
    if not (folder / ".complete").exists():
        staging = Path(tempfile.mkdtemp(prefix="kappa-spark-jars-"))
        for jar in jars:
            shutil.copy2(jar, staging / jar.name)
        (staging / ".complete").touch()
        try:
            staging.rename(folder)
        except OSError:  # another process got there first: use its copy
            shutil.rmtree(staging, ignore_errors=True)
    return [folder / jar.name for jar in jars]


def check_master(master: str) -> str:
    """``master`` if Spark can take it; a message naming the setting otherwise."""
    if MASTER_FORMS.fullmatch(master.strip()) is None:
        msg = (
            f"bad Spark master {master!r} (the --master flag or a KAPPA_*_MASTER setting): "
            "expected "
            "local, local[N], local[*], spark://HOST:PORT[,HOST:PORT...], yarn or k8s://URL"
        )
        raise BadSettingError(msg)
    return master.strip()


def session(
    settings: AggregateSettings,
    stack: StackSettings,
    app_name: str = "kappa-aggregate",
    master: str | None = None,
    extra_conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Build (or return the already running) SparkSession of this process.

    Spark allows one active session per JVM; a second call returns the first
    session, with its runtime SQL settings (shuffle partitions, time zone)
    re-applied.
    """
    jars = stable_copies(connector_jars(stack))
    # Workers must run the interpreter that has the project and its pins.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    if stack.java_home is not None:
        os.environ["JAVA_HOME"] = str(stack.java_home)
    the_master = check_master(master or settings.master)
    conf: dict[str, str] = {
        "spark.master": the_master,
        "spark.app.name": app_name,
        "spark.jars": ",".join(str(j) for j in jars),
        "spark.pyspark.python": sys.executable,
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.default.parallelism": str(settings.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.driver.memory": settings.driver_memory,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.metricsEnabled": "true",
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }
    if the_master.startswith("local") or _on_loopback(the_master):
        # a standalone master on loopback (`kappa stack up --cluster`) has executors
        # that reach the driver on loopback too, whatever the host name resolves to
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    conf.update(settings.spark_conf)
    if extra_conf:
        conf.update(extra_conf)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = _keeping_sigint(builder.getOrCreate)
    spark.sparkContext.setLogLevel("WARN")
    quiet_loggers(spark)
    for key in ("spark.sql.shuffle.partitions", "spark.sql.session.timeZone"):
        spark.conf.set(key, conf[key])
    log.info(
        "spark session master=%s shuffle_partitions=%s jars=%d",
        the_master,
        settings.shuffle_partitions,
        len(jars),
    )
    return spark


def _keeping_sigint(create: Callable[[], SparkSession]) -> SparkSession:
    """``create()`` with the process's own SIGINT handler kept.

    pyspark's context replaces it with one that calls into the JVM from the signal
    handler (``cancelAllJobs``): on Ctrl-C that call re-enters py4j, fails, and the
    failure, not the interruption, surfaces. A terminal stops the JVM with the
    process anyway; the command's handler reports the interruption.
    """
    if threading.current_thread() is not threading.main_thread():
        return create()
    handler = signal.getsignal(signal.SIGINT)
    try:
        return create()
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


QUIET_LOGGERS = (
    # Warns, per task, that a nullable column written to a non-nullable Avro field
    # would fail on a null; the window rows written so have no null (a null would
    # still fail the batch, loudly).
    "org.apache.spark.sql.avro.AvroSerializer",
)


def quiet_loggers(spark: SparkSession) -> None:
    """Raise exactly the loggers of ``QUIET_LOGGERS`` to ERROR in this JVM."""
    jvm: Any = spark.sparkContext._jvm
    log4j = jvm.org.apache.logging.log4j
    for name in QUIET_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.ERROR)


def _on_loopback(master: str) -> bool:
    """Whether ``master`` is a standalone master URL on this machine's loopback."""
    hosts = master.removeprefix("spark://").split(",")
    return master.startswith("spark://") and all(
        h.rsplit(":", 1)[0] in ("127.0.0.1", "localhost") for h in hosts
    )


def run_concurrently(jobs: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run independent Spark actions from threads at the same time; their results by name.

    On two cores a job's planning, single-task stages and file commits leave a core
    idle; another job's tasks fill it. Waits for every job, then raises the first
    failure, if any (so nothing is still writing when the caller cleans up).
    """
    if len(jobs) <= 1:
        return {name: fn() for name, fn in jobs.items()}
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="spark-job") as pool:
        futures = {name: pool.submit(fn) for name, fn in jobs.items()}
        wait(futures.values())
    return {name: future.result() for name, future in futures.items()}
