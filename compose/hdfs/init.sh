#!/usr/bin/env bash
# One-shot (the `hdfs-init` service): waits until the NameNode leaves safe mode
# and gives the pipeline's user its folders. Runs as the HDFS super user.
set -euo pipefail
user=${KAPPA_HDFS_USER:-kappa}
hdfs dfsadmin -safemode wait
hdfs dfs -mkdir -p /kappa /var/lib/kappa /tmp /user/"$user"
hdfs dfs -chmod 1777 /tmp
hdfs dfs -chown -R "$user":"$user" /kappa /var/lib/kappa /user/"$user"
echo "hdfs-init: /kappa, /var/lib/kappa and /user/$user belong to $user"
