"""A local HDFS: one NameNode and one DataNode on loopback, Hadoop from Maven Central."""

from __future__ import annotations

import getpass
import logging
import subprocess
from pathlib import Path
from typing import Any

from kappa.settings import StackSettings
from kappa.stack.exceptions import ServiceStartError
from kappa.stack.java import Jdk, find_java
from kappa.stack.layout import Layout, copy_template, render
from kappa.stack.net import LOOPBACK, http_json, http_ok
from kappa.stack.process import ServiceSpec, jvm_marker

log = logging.getLogger(__name__)

NAMENODE_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"
JAVA_MIN = 17
CLUSTER_ID = "kappa-local"
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

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
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

    def _render_conf(self) -> None:
        values: dict[str, Any] = {
            "namenode_port": self.settings.hdfs_namenode_port,
            "http_port": self.settings.hdfs_http_port,
            "hdfs_dir": self.hdfs_dir,
            "user": getpass.getuser(),
        }
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

    def _namesystem(self) -> dict[str, Any] | None:
        url = f"{self.http_url()}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
        body = http_json(url)
        if not isinstance(body, dict) or not body.get("beans"):
            return None
        bean = body["beans"][0]
        return bean if isinstance(bean, dict) else None


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
