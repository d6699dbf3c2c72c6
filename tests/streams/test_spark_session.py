"""The session every job shares: masters it refuses before any JVM starts, and the
one chatty logger it quiets."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.avro.functions import to_avro

from streams.exceptions import BadSettingError
from streams.spark import QUIET_LOGGERS, check_master


@pytest.mark.parametrize(
    "master",
    ["local", "local[2]", "local[*]", "local[2,3]", "spark://127.0.0.1:7077", "spark://a:1,b:2"],
)
def test_masters_spark_takes_pass(master: str) -> None:
    assert check_master(master) == master


@pytest.mark.parametrize("master", ["bogus", "spark://host", "local[two]", "", "local [2]"])
def test_other_masters_are_refused_naming_the_flag(master: str) -> None:
    with pytest.raises(BadSettingError, match="--master"):
        check_master(master)


@pytest.mark.spark
def test_only_the_avro_serializer_logger_is_quieted(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    levels = jvm.org.apache.logging.log4j.LogManager
    for name in QUIET_LOGGERS:
        assert str(levels.getLogger(name).getLevel()) == "ERROR"
    assert str(levels.getLogger("org.apache.spark.sql.avro.AvroDeserializer").getLevel()) == "WARN"
    # what the window rows go through still works (and would still fail on a null)
    schema = '{"type":"record","name":"r","fields":[{"name":"id","type":"long"}]}'
    rows = spark.range(3).select(to_avro(sf.struct("id"), schema).alias("v")).collect()
    assert len(rows) == 3
