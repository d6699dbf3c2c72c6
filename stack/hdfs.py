"""A local HDFS on loopback, Hadoop from Maven Central: one NameNode and one DataNode,
or (the local cluster) one NameNode and two DataNodes with replication 2."""

from __future__ import annotations

import getpass
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from kappa.settings import ClusterSettings, StackSettings
from stack.exceptions import ServiceStartError
from stack.java import Jdk, find_java
from stack.layout import Layout, copy_template, render
from stack.net import LOOPBACK, http_json, http_ok
from stack.process import ServiceSpec, jvm_marker

log = logging.getLogger(__name__)

NAMENODE_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"
JAVA_MIN = 17
CLUSTER_ID = "kappa-local"
# How soon the NameNode declares a silent DataNode dead (2 x this + 10 heartbeats):
# Hadoop's default on the single node, 30 s on the cluster (a killed node is noticed).
SINGLE_RECHECK_MS = 300_000
CLUSTER_RECHECK_MS = 5_000
# Hadoop 3.4 on Java 17 reflects into the JDK here and there.
_OPENS = [
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in (
        "java.lang",
        "java.util",
        "java.io",
        "java.nio",
        "sun.nio.ch",
        "java.net",
        "java.util.concurrent",
    )
]


class _HdfsBase:
    name = ""
    log_name = ""

    def __init__(self, settings: StackSettings, replication: int = 1) -> None:
        """``replication``: dfs.replication, 1 on the single node, 2 on the cluster."""
        self.settings = settings
        self.replication = replication
        self.layout = Layout.of(settings)

    @property
    def hdfs_dir(self) -> Path:
        return self.layout.home("hdfs")

    @property
    def conf_dir(self) -> Path:
        return self.hdfs_dir / "conf"

    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.settings.hdfs_http_port}"

    def fs_url(self) -> str:
        return f"hdfs://{LOOPBACK}:{self.settings.hdfs_namenode_port}"

    def _jdk(self) -> Jdk:
        return find_java(JAVA_MIN, self.settings.java_home)

    def _classpath(self) -> str:
        lib = self.layout.require("hdfs", "hadoop-hdfs-*.jar")
        return f"{self.conf_dir}:{lib / '*'}"

    def check(self) -> None:
        self._classpath()
        self._jdk()

    def _conf_values(self) -> dict[str, Any]:
        return {
            "namenode_port": self.settings.hdfs_namenode_port,
            "http_port": self.settings.hdfs_http_port,
            "hdfs_dir": self.hdfs_dir,
            "user": getpass.getuser(),
            "replication": self.replication,
            "data_dir": self.hdfs_dir / "data",
            "datanode_port": 0,
            "datanode_ipc_port": 0,
            "datanode_http_port": 0,
            "recheck_ms": SINGLE_RECHECK_MS if self.replication == 1 else CLUSTER_RECHECK_MS,
        }

    def _render_conf(self) -> None:
        values = self._conf_values()
        render("hdfs/core-site.xml", self.conf_dir / "core-site.xml", **values)
        render("hdfs/hdfs-site.xml", self.conf_dir / "hdfs-site.xml", **values)
        copy_template("hdfs/log4j.properties", self.conf_dir / "log4j.properties")

    def _jvm_args(self, name: str, log_file: str) -> list[str]:
        logs = self.layout.state_dir / "logs" / "hdfs"
        logs.mkdir(parents=True, exist_ok=True)
        return [
            str(self._jdk().java),
            f"-Xmx{self.settings.hdfs_heap}",
            "-Xms32m",
            "-XX:+UseSerialGC",
            *_OPENS,
            "-Djava.net.preferIPv4Stack=true",
            f"-Dhadoop.log.dir={logs}",
            f"-Dhadoop.log.file={log_file}",
            f"-Dhadoop.home.dir={self.hdfs_dir}",
            f"-Dhadoop.tmp.dir={self.hdfs_dir / 'tmp'}",
            jvm_marker(name, self.layout.state_dir),
            "-cp",
            self._classpath(),
        ]

    def _spec(self, main_class: str) -> ServiceSpec:
        # No class-data archive: the conf folder on the classpath rules one out.
        return ServiceSpec(
            name=self.name,
            argv=[*self._jvm_args(self.name, self.log_name), main_class],
            marker=jvm_marker(self.name, self.layout.state_dir),
            cwd=self.hdfs_dir,
        )

    def _bean(self, name: str) -> dict[str, Any] | None:
        body = http_json(f"{self.http_url()}/jmx?qry=Hadoop:service=NameNode,name={name}")
        if not isinstance(body, dict) or not body.get("beans"):
            return None
        bean = body["beans"][0]
        return bean if isinstance(bean, dict) else None

    def _namesystem(self) -> dict[str, Any] | None:
        return self._bean("FSNamesystemState")

    def live_datanodes(self, fresh_s: int = 5) -> set[int]:
        """The data-transfer ports of the DataNodes the NameNode counts alive and has
        heard from in the last ``fresh_s`` seconds (a killed one stays "live" a while)."""
        info = self._bean("NameNodeInfo")
        if info is None:
            return set()
        try:
            live = json.loads(str(info.get("LiveNodes") or "{}"))
        except ValueError:
            return set()
        ports = set()
        for node in live.values():
            if not isinstance(node, dict) or int(node.get("lastContact", fresh_s)) >= fresh_s:
                continue
            address = str(node.get("xferaddr", ""))
            if address.rpartition(":")[2].isdigit():
                ports.add(int(address.rpartition(":")[2]))
        return ports


class NameNodeService(_HdfsBase):
    name = "hdfs-namenode"
    log_name = "namenode.log"

    @property
    def port(self) -> int:
        return self.settings.hdfs_namenode_port

    @property
    def ports(self) -> dict[str, int]:
        return {
            "HDFS NameNode": self.settings.hdfs_namenode_port,
            "HDFS NameNode web": self.settings.hdfs_http_port,
        }

    def url(self) -> str:
        return self.fs_url()

    def prepare(self) -> None:
        self._render_conf()
        if (self.hdfs_dir / "name" / "current" / "VERSION").exists():
            return
        log.info("formatting HDFS dir=%s", self.hdfs_dir / "name")
        argv = [
            *self._jvm_args("hdfs-format", "format.log"),
            NAMENODE_CLASS,
            "-format",
            "-clusterid",
            CLUSTER_ID,
            "-nonInteractive",
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            msg = f"formatting HDFS in {self.hdfs_dir / 'name'} failed: {detail[0]}"
            raise ServiceStartError(msg)

    def spec(self) -> ServiceSpec:
        return self._spec(NAMENODE_CLASS)

    def healthy(self) -> bool:
        return http_ok(f"{self.http_url()}/webhdfs/v1/?op=GETFILESTATUS")


class DataNodeService(_HdfsBase):
    name = "hdfs-datanode"
    log_name = "datanode.log"

    @property
    def port(self) -> int | None:
        return None

    @property
    def ports(self) -> dict[str, int]:
        return {}

    def url(self) -> str | None:
        return None

    def prepare(self) -> None:
        self._render_conf()

    def spec(self) -> ServiceSpec:
        return self._spec(DATANODE_CLASS)

    def healthy(self) -> bool:
        """Registered with the NameNode, which has left safe mode."""
        state = self._namesystem()
        if state is None:
            return False
        return (
            int(state.get("NumLiveDataNodes", 0)) >= 1
            and int(state.get("CapacityRemaining", 0)) > 0
            and state.get("FSState") == "Operational"
        )


class ClusterDataNodeService(DataNodeService):
    """DataNode ``index`` (1, 2) of the local cluster, on fixed ports of ClusterSettings.

    It has its own conf folder (``hdfs/conf-datanode-<n>``) and data folder
    (``hdfs/data-<n>``); the NameNode's conf folder stays ``hdfs/conf``.
    """

    def __init__(self, settings: StackSettings, cluster: ClusterSettings, index: int) -> None:
        super().__init__(settings, replication=2)
        self.cluster = cluster
        self.index = index
        self.name = f"hdfs-datanode-{index}"
        self.log_name = f"datanode-{index}.log"

    @property
    def conf_dir(self) -> Path:
        return self.hdfs_dir / f"conf-datanode-{self.index}"

    @property
    def data_port(self) -> int:
        return self.cluster.datanode_ports[self.index - 1]

    @property
    def port(self) -> int:
        return self.data_port

    @property
    def ports(self) -> dict[str, int]:
        i = self.index - 1
        return {
            f"{self.name} data": self.data_port,
            f"{self.name} ipc": self.cluster.datanode_ipc_ports[i],
            f"{self.name} web": self.cluster.datanode_http_ports[i],
        }

    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.cluster.datanode_http_ports[self.index - 1]}"

    def _conf_values(self) -> dict[str, Any]:
        i = self.index - 1
        return {
            **super()._conf_values(),
            "data_dir": self.hdfs_dir / f"data-{self.index}",
            "datanode_port": self.data_port,
            "datanode_ipc_port": self.cluster.datanode_ipc_ports[i],
            "datanode_http_port": self.cluster.datanode_http_ports[i],
        }

    def healthy(self) -> bool:
        """The NameNode counts this DataNode alive, and takes writes."""
        state = self._namesystem()
        return (
            state is not None
            and state.get("FSState") == "Operational"
            and self.data_port in self.live_datanodes()
        )
