#!/usr/bin/env bash
# NameNode of the compose deployment: formats its volume on first start only.
set -euo pipefail
name_dir=/hadoop/dfs/name
if [[ ! -f $name_dir/current/VERSION ]]; then
  echo "namenode: formatting $name_dir (first start)"
  hdfs namenode -format -force -nonInteractive -clusterid "${HDFS_CLUSTER_ID:-telecom-kappa}"
fi
exec hdfs namenode
