#!/usr/bin/env bash
# Broker healthcheck: the BROKER listener answers an authenticated ApiVersions.
set -euo pipefail
conf=/tmp/kappa-admin.properties
[[ -s $conf ]] || /etc/kappa/kafka/admin-client.sh "$conf"
/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9094 \
  --command-config "$conf" >/dev/null 2>&1
