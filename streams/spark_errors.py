"""What a Spark or py4j error means, read in one place.

Spark reports most failures as text: a ``StreamingQueryException`` or a
``Py4JJavaError`` whose message holds the Java exception, its class and its
cause chain. Every decision the project takes from that text is a function here,
named after the condition, so a Spark upgrade that rewords a message is fixed
once (``tests/streams/test_spark_errors.py`` pins the texts).
"""

from __future__ import annotations

from dataclasses import dataclass


def _text(error: BaseException | str) -> str:
    return error if isinstance(error, str) else str(error)


def first_line(error: BaseException | str, limit: int = 500) -> str:
    """The first non-blank line of the error's text (its ``repr`` if it has none)."""
    text = _text(error).strip()
    if not text:
        return repr(error)
    return text.splitlines()[0][:limit]


def progress_report_bug(error: BaseException | str) -> bool:
    """Spark 4.1.1's Kafka source fails the progress report of the first batch after a
    restart when that batch re-runs one logged before a crash: ``latestPartitionOffsets``
    was never fetched (NullPointerException in ``KafkaMicroBatchStream.metrics``). The
    batch's sink output and its commit are written before the report."""
    text = _text(error)
    return ("KafkaMicroBatchStream" in text and "NullPointerException" in text) or (
        "Option.get()" in text and "is null" in text
    )


def checkpoint_mismatch(error: BaseException | str) -> bool:
    """Spark's own words for a checkpoint that does not fit the query."""
    text = _text(error)
    return "sources in the checkpoint" in text or "STATE_STORE_" in text


def bad_trigger(error: BaseException | str) -> bool:
    """Spark refused a trigger interval."""
    text = _text(error)
    return "IllegalArgumentException" in text or "interval" in text.lower()


def file_exists(error: BaseException | str) -> bool:
    """Hadoop refused to create a file that exists (or that another client is creating)."""
    text = _text(error)
    return "FileAlreadyExistsException" in text or "AlreadyBeingCreated" in text


def gateway_exited(error: BaseException | str) -> bool:
    """pyspark's JVM exited before the session could be used."""
    return "JAVA_GATEWAY_EXITED" in _text(error)


@dataclass(frozen=True)
class JavaUnreachable:
    """A Java client could not reach ``address`` (``host:port`` when Java said it)."""

    address: str
    cause: str
    """``connection refused`` or ``unknown host``."""
    hdfs: bool
    """Whether the client was HDFS's."""


def java_unreachable(error: BaseException | str) -> JavaUnreachable | None:
    """The service a Java ``ConnectException``/``UnknownHostException`` names, if any."""
    text = _text(error)
    if "java.net.ConnectException" not in text and "java.net.UnknownHostException" not in text:
        return None
    return JavaUnreachable(
        address=_java_target(text),
        cause="connection refused" if "ConnectException" in text else "unknown host",
        hdfs="hadoop.hdfs" in text or "hdfs://" in text,
    )


def _java_target(text: str) -> str:
    """``host:port`` from Java's 'Call From x to host:port failed' message, if any."""
    marker = " to "
    for line in text.splitlines():
        if "Call From" in line and marker in line:
            tail = line.split(marker, 1)[1]
            return tail.split(" ", 1)[0]
    return "the configured address"
