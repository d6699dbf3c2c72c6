"""All settings, in one place.

Each component has one frozen settings class whose fields are read from
``KAPPA_``-prefixed environment variables (the prefix of each class is given
below).  They are read once, at the entry point, and passed down; nothing in a
job reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore")


def _metrics_port(default: int, what: str = "Prometheus port") -> Any:
    return Field(default, ge=0, le=65535, description=f"{what} (0: off)")


def _metrics_host(what: str = "the metrics endpoint") -> Any:
    return Field("127.0.0.1", description=f"address {what} binds")


class KafkaSettings(BaseSettings):
    """How every process reaches Kafka (``KAPPA_KAFKA_*``)."""

    model_config = _config("KAPPA_KAFKA_")

    bootstrap: str = Field("localhost:9092", description="Kafka bootstrap servers")
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when a SASL protocol is used"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password")
    client_id: str = Field("telecom-kappa", description="client.id prefix")

    def client_config(self) -> dict[str, Any]:
        """The librdkafka properties shared by producers, consumers and admins."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.security_protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.sasl_mechanism
            if self.sasl_username is not None:
                conf["sasl.username"] = self.sasl_username
            if self.sasl_password is not None:
                conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf

    def spark_options(self) -> dict[str, str]:
        """The same connection as options of Spark's Kafka source."""
        opts = {
            "kafka.bootstrap.servers": self.bootstrap,
            "kafka.security.protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            user = self.sasl_username or ""
            pwd = self.sasl_password.get_secret_value() if self.sasl_password else ""
            opts["kafka.sasl.mechanism"] = self.sasl_mechanism
            opts["kafka.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{user}" password="{pwd}";'
            )
        return opts


class RegistrySettings(BaseSettings):
    """The Confluent-compatible Schema Registry (``KAPPA_SCHEMA_REGISTRY_*``)."""

    model_config = _config("KAPPA_SCHEMA_REGISTRY_")

    url: str = Field(
        "http://localhost:8085/apis/ccompat/v7",
        description="Schema Registry URL (Confluent API)",
    )
    basic_auth_user_info: SecretStr | None = Field(
        None, description="user:password for the registry, if it needs one"
    )

    def client_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"url": self.url}
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        return conf


class TopicSettings(BaseSettings):
    """Topic names and their layout (``KAPPA_TOPIC_*``)."""

    model_config = _config("KAPPA_TOPIC_")

    raw: str = Field("cdr.raw", description="raw CDR topic (CdrRaw)")
    valid: str = Field("cdr.valid", description="validated CDR topic (Cdr)")
    dlq: str = Field("cdr.dlq", description="dead-letter topic (DeadLetter)")
    billing: str = Field("cdr.billing.5m", description="windowed billing topic")
    network: str = Field("cdr.network.5m", description="windowed tower metrics topic")
    late: str = Field("cdr.late", description="late CDRs missed by their window")
    partitions: int = Field(3, ge=1, description="partitions of each topic")
    # Message timestamps are event times, so time-based retention is counted
    # from event time. Ten years keeps simulated clocks in the past safe.
    retention_ms: int = Field(
        10 * 365 * 24 * 3600 * 1000, ge=-1, description="retention.ms of each topic (-1: forever)"
    )

    def all(self) -> list[str]:
        return [self.raw, self.valid, self.dlq, self.billing, self.network, self.late]


class StackSettings(BaseSettings):
    """The embedded local stack (``KAPPA_*``)."""

    model_config = _config("KAPPA_")

    state_dir: Path = Field(Path(".kappa"), description="logs, data and pids of the local stack")
    deps_dir: Path = Field(Path(".deps"), description="JVM artifacts resolved by the install step")
    kafka_port: int = Field(9092, ge=1, le=65535, description="local broker port")
    controller_port: int = Field(9093, ge=1, le=65535, description="local KRaft controller port")
    registry_port: int = Field(8085, ge=1, le=65535, description="local Schema Registry port")
    hdfs_namenode_port: int = Field(
        9000, ge=1, le=65535, description="local HDFS NameNode RPC port"
    )
    hdfs_http_port: int = Field(9870, ge=1, le=65535, description="local HDFS NameNode web port")
    prometheus_port: int = Field(9090, ge=1, le=65535, description="local Prometheus port")
    java_home: Path | None = Field(
        None, description="JDK for the local stack (default: java on PATH)"
    )
    registry_java_home: Path | None = Field(
        None,
        description="JDK 21+ for the Schema Registry (default: the first 21+ JDK found)",
    )
    start_timeout_s: float = Field(
        120.0, gt=0, description="seconds to wait for a service to answer"
    )
    kafka_heap: str = Field("512m", description="broker heap (-Xmx)")
    registry_heap: str = Field("384m", description="registry heap (-Xmx)")
    hdfs_heap: str = Field("256m", description="heap of each HDFS daemon (-Xmx)")


class ProducerSettings(BaseSettings):
    """``kappa produce`` defaults (``KAPPA_PRODUCER_*``); its flags override them."""

    model_config = _config("KAPPA_PRODUCER_")

    rate: float = Field(10.0, ge=0, description="records per second (0: as fast as possible)")
    seed: int | None = Field(None, description="random seed (default: a fresh one per run)")
    workers: int = Field(
        1, ge=1, le=64, description="producer processes, each its own stream of the seed"
    )
    metrics_port: int = _metrics_port(9101)
    metrics_host: str = _metrics_host()


class ReplaySettings(BaseSettings):
    """``kappa replay`` and ``kappa parity`` (``KAPPA_REPLAY_*``)."""

    model_config = _config("KAPPA_REPLAY_")

    output: str | None = Field(
        None,
        description="root URL of replay outputs, a local path or hdfs://host:port/path "
        "(default: <state_dir>/replay)",
    )
    lateness_margin_s: int = Field(
        900,
        ge=0,
        description="seconds a record may lag event time and still be replayed "
        "(keep above the aggregation's 10-min watermark)",
    )
    progress: bool = Field(True, description="print stage progress while a replay runs")
    master: str | None = Field(
        None, description="Spark master of replays (default: KAPPA_AGGREGATE_MASTER)"
    )
    records_per_task: int = Field(
        250_000,
        ge=1_000,
        description="offsets per Spark read task: a partition's span is split into tasks "
        "of about this size, so every core has work",
    )
    metrics_port: int = _metrics_port(9104)
    metrics_host: str = _metrics_host()

    def output_root(self, state_dir: Path) -> str:
        """The output root: the setting, or a folder under the state dir."""
        if self.output:
            return self.output.rstrip("/")
        return str((state_dir / "replay").resolve())


class ValidatorSettings(BaseSettings):
    """``kappa validate`` and the DLQ tools (``KAPPA_VALIDATOR_*``)."""

    model_config = _config("KAPPA_VALIDATOR_")

    group_id: str = Field("kappa-validator", description="consumer group of the validator")
    transactional_id: str = Field(
        "kappa-validator-0",
        description="transactional.id of this instance; stable across restarts, unique",
    )
    batch_size: int = Field(
        200_000,
        ge=1,
        description="records per micro-batch (at most; GX has a fixed cost per batch)",
    )
    batch_seconds: float = Field(
        0.5, gt=0, description="seconds a micro-batch waits to fill (at most)"
    )
    dedup_horizon_s: float = Field(
        24 * 3600.0, gt=0, description="seconds (of event time) a call_id is remembered for dedup"
    )
    future_tolerance_s: float = Field(
        900.0,
        ge=0,
        le=3600,
        description=(
            "how far event_time may be ahead of the judging time, in seconds (at most an "
            "hour: brokers refuse message timestamps further ahead)"
        ),
    )
    suite_version: str = Field(
        "1", description="version of the expectation suite, carried by dead letters"
    )
    disabled_rules: tuple[str, ...] = Field(
        (), description="rules switched off in this suite version (JSON list of rule names)"
    )
    session_timeout_ms: int = Field(10_000, ge=1000, description="consumer session.timeout.ms")
    transaction_timeout_ms: int = Field(
        60_000, ge=1000, description="producer transaction.timeout.ms"
    )
    metrics_port: int = _metrics_port(9102)
    metrics_host: str = _metrics_host()
    quality_dir: Path = Field(
        Path(".kappa/quality"), description="where `kappa quality report` writes GX Data Docs"
    )


class AirflowSettings(BaseSettings):
    """The replay DAG and the local Airflow of ``kappa airflow up`` (``KAPPA_AIRFLOW_*``)."""

    model_config = _config("KAPPA_AIRFLOW_")

    home: Path | None = Field(
        None, description="AIRFLOW_HOME of the local Airflow (default: <state_dir>/airflow)"
    )
    host: str = Field("127.0.0.1", description="address the Airflow UI/API server binds")
    port: int = Field(8088, ge=1, le=65535, description="Airflow UI/API server port")
    executor: str = Field("LocalExecutor", description="Airflow executor of the local Airflow")
    database_url: SecretStr | None = Field(
        None, description="Airflow metadata database URL (default: SQLite under the home)"
    )
    spark_master: str | None = Field(
        None, description="Spark master for replay tasks (default: the replay's, local mode)"
    )
    start_date: AwareDatetime | None = Field(
        None,
        description="start of the DAG's first scheduled interval (default: pinned at the "
        "first `kappa airflow up`; unset and unpinned, the DAG does not catch up)",
    )
    lateness_margin_s: float | None = Field(
        None,
        ge=0,
        description="seconds after an interval's end before it is closed "
        "(default: the replay's lateness margin)",
    )
    poke_interval_s: float = Field(60.0, gt=0, description="seconds between wait_closed pokes")
    wait_timeout_s: float = Field(
        3 * 3600.0, gt=0, description="seconds wait_closed waits before it fails the run"
    )
    metrics_dir: Path | None = Field(
        None, description="folder of the run metrics text files (default: <home>/metrics)"
    )
    metrics_port: int = _metrics_port(9107, "port of `kappa airflow metrics-exporter`")
    metrics_host: str = _metrics_host("the metrics exporter")

    def home_path(self, state_dir: Path) -> Path:
        """The Airflow home: the setting, else ``<state_dir>/airflow``."""
        return self.home if self.home is not None else state_dir / "airflow"

    def metrics_path(self, state_dir: Path) -> Path:
        """The run metrics folder: the setting, else ``<home>/metrics``."""
        if self.metrics_dir is not None:
            return self.metrics_dir
        return self.home_path(state_dir) / "metrics"


class AggregateSettings(BaseSettings):
    """``kappa aggregate``: the Spark windowed aggregation (``KAPPA_AGGREGATE_*``)."""

    model_config = _config("KAPPA_AGGREGATE_")

    master: str = Field("local[2]", description="Spark master (local[N] or a cluster URL)")
    output: str | None = Field(
        None,
        description="root of the Parquet outputs, a local path or an hdfs:// URL "
        "(default: <state_dir>/aggregate)",
    )
    checkpoint_dir: str | None = Field(
        None,
        description="Spark's checkpoint of the query (offsets, commits, window state): a "
        "path or a Hadoop URL such as hdfs://host:port/path "
        "(default: <state_dir>/checkpoints/aggregate)",
    )
    state_store: Literal["rocksdb", "hdfs"] = Field(
        "rocksdb",
        description="Spark state store provider of the open windows: rocksdb "
        "(RocksDBStateStoreProvider) or hdfs (HDFSBackedStateStoreProvider, in memory)",
    )
    changelog_checkpointing: bool = Field(
        True, description="RocksDB changelog checkpointing (upload only each batch's changes)"
    )
    watermark: str = Field("10 minutes", description="allowed event-time lateness")
    window: str = Field("5 minutes", description="tumbling window length")
    trigger: str = Field("30 seconds", description="micro-batch trigger interval")
    shuffle_partitions: int = Field(4, ge=1, description="spark.sql.shuffle.partitions")
    max_offsets_per_trigger: int | None = Field(
        None, ge=1, description="cap on records read per micro-batch (default: all available)"
    )
    min_read_tasks: int = Field(
        6,
        ge=1,
        description="read tasks per micro-batch at least (the Kafka source's minPartitions): "
        "three partitions on two cores would leave one core idle for a third of each read",
    )
    starting_offsets: Literal["earliest", "latest"] = Field(
        "earliest", description="where a query without a checkpoint starts reading"
    )
    driver_memory: str = Field("2g", description="spark.driver.memory (local mode: all of Spark)")
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description="more Spark settings of the session, a JSON object, e.g. on a cluster "
        '{"spark.executor.memory":"1g","spark.hadoop.dfs.replication":"2"}',
    )
    rate_voice_per_minute: float = Field(2.0, ge=0, description="VOICE price per billable minute")
    rate_sms_each: float = Field(1.0, ge=0, description="price of one SMS")
    rate_data_per_mb: float = Field(0.5, ge=0, description="DATA price per MB (1024 KB)")
    currency: str = Field("LKR", description="currency of the rate card (ISO 4217)")
    low_signal_threshold: int = Field(
        2, ge=1, le=5, description="signal_strength at or below this counts as low signal"
    )
    metrics_port: int = _metrics_port(9103)
    metrics_host: str = _metrics_host()

    @field_validator("checkpoint_dir", mode="before")
    @classmethod
    def _location_text(cls, value: Any) -> Any:
        """A ``Path`` is as good as its text: the checkpoint may be a path or a URL."""
        return str(value) if isinstance(value, Path) else value


class ClusterSettings(BaseSettings):
    """``kappa stack up --cluster``: the local multi-node cluster (``KAPPA_CLUSTER_*``).

    Three KRaft brokers, a Schema Registry, a Spark standalone master with two
    workers, and an HDFS NameNode with two DataNodes, all on loopback. Lists of
    ports are JSON (``KAPPA_CLUSTER_KAFKA_PORTS='[19092,19094,19096]'``). The
    defaults stay clear of the single-node stack's ports, so both can run at once.
    """

    model_config = _config("KAPPA_CLUSTER_")

    kafka_ports: tuple[int, int, int] = Field(
        (19092, 19094, 19096), description="client ports of the three brokers (JSON list)"
    )
    controller_ports: tuple[int, int, int] = Field(
        (19093, 19095, 19097), description="KRaft controller ports of the three nodes (JSON list)"
    )
    registry_port: int = Field(18085, ge=1, le=65535, description="cluster Schema Registry port")
    spark_master_port: int = Field(17077, ge=1, le=65535, description="Spark master port")
    spark_master_web_port: int = Field(
        18080, ge=1, le=65535, description="Spark master web UI port"
    )
    spark_worker_ports: tuple[int, int] = Field(
        (17078, 17079), description="ports of the two Spark workers (JSON list)"
    )
    spark_worker_web_ports: tuple[int, int] = Field(
        (18081, 18082), description="web UI ports of the two Spark workers (JSON list)"
    )
    hdfs_namenode_port: int = Field(19000, ge=1, le=65535, description="HDFS NameNode RPC port")
    hdfs_http_port: int = Field(19870, ge=1, le=65535, description="HDFS NameNode web port")
    datanode_ports: tuple[int, int] = Field(
        (19866, 19966), description="dfs.datanode.address ports of the two DataNodes (JSON list)"
    )
    datanode_ipc_ports: tuple[int, int] = Field(
        (19867, 19967), description="dfs.datanode.ipc.address ports (JSON list)"
    )
    datanode_http_ports: tuple[int, int] = Field(
        (19864, 19964), description="dfs.datanode.http.address ports (JSON list)"
    )
    kafka_heap: str = Field("448m", description="heap of each broker (-Xmx)")
    spark_daemon_memory: str = Field(
        "256m", description="heap of the Spark master and of each worker daemon"
    )
    worker_cores: int = Field(1, ge=1, description="cores each Spark worker offers")
    worker_memory: str = Field("2g", description="memory each Spark worker offers to executors")
    executor_memory: str = Field("1g", description="spark.executor.memory of jobs on the cluster")
