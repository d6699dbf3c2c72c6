#!/usr/bin/env bash
# Broker healthcheck: the BROKER listener answers an authenticated ApiVersions.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf=/tmp/kappa-admin.properties
[[ -s $conf ]] || "$here/admin-client.sh" "$conf"
"${KAFKA_BIN:-/opt/kafka/bin}/kafka-broker-api-versions.sh" --bootstrap-server "${BROKER_ADMIN_BOOTSTRAP:-localhost:9094}" \
  --command-config "$conf" >/dev/null 2>&1
