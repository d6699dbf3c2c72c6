"""``streams.spark_errors``: each condition read from the texts Spark and Hadoop write."""

from __future__ import annotations

from streams import spark_errors

NPE = (
    "[STREAM_FAILED] Query [id = 1] terminated with exception: "
    "java.lang.NullPointerException\n\tat org.apache.spark.sql.kafka010."
    "KafkaMicroBatchStream.metrics(KafkaMicroBatchStream.scala:290)"
)
HDFS_DOWN = (
    "An error occurred while calling o52.start.\n: java.net.ConnectException: "
    "Call From vm/127.0.0.1 to 127.0.0.1:9000 failed on connection exception: "
    "java.net.ConnectException: Connection refused; at org.apache.hadoop.hdfs.DFSClient"
)


def test_progress_report_bug_is_the_kafka_source_npe_only() -> None:
    assert spark_errors.progress_report_bug(NPE)
    assert spark_errors.progress_report_bug(Exception("None.get: Option.get() is null"))
    assert not spark_errors.progress_report_bug("java.lang.NullPointerException at Foo")


def test_checkpoint_and_trigger_conditions() -> None:
    assert spark_errors.checkpoint_mismatch("There are [1] sources in the checkpoint offsets")
    assert spark_errors.checkpoint_mismatch("[STATE_STORE_KEY_SCHEMA_NOT_COMPATIBLE] ...")
    assert not spark_errors.checkpoint_mismatch(NPE)
    assert spark_errors.bad_trigger("java.lang.IllegalArgumentException: bad")
    assert spark_errors.bad_trigger("Invalid interval: 'ten seconds'")


def test_file_exists_and_gateway() -> None:
    assert spark_errors.file_exists("org.apache.hadoop.fs.FileAlreadyExistsException: /x")
    assert spark_errors.file_exists("AlreadyBeingCreatedException: lease")
    assert not spark_errors.file_exists(HDFS_DOWN)
    assert spark_errors.gateway_exited(RuntimeError("[JAVA_GATEWAY_EXITED] Java gateway ..."))


def test_java_unreachable_names_the_address_and_the_service() -> None:
    found = spark_errors.java_unreachable(HDFS_DOWN)
    assert found == spark_errors.JavaUnreachable("127.0.0.1:9000", "connection refused", True)
    dns = spark_errors.java_unreachable("java.net.UnknownHostException: nowhere")
    assert dns is not None
    assert (dns.cause, dns.hdfs, dns.address) == ("unknown host", False, "the configured address")
    assert spark_errors.java_unreachable(NPE) is None


def test_first_line() -> None:
    assert spark_errors.first_line(NPE).startswith("[STREAM_FAILED]")
    assert spark_errors.first_line(RuntimeError("")) == "RuntimeError('')"
