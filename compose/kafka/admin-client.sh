#!/usr/bin/env bash
# Writes the admin client properties (PLAIN `admin` on the BROKER listener,
# reachable only inside the compose network) to the path given, from
# $BROKER_ADMIN_PASSWORD. Used by the broker's healthcheck and by setup.sh.
set -euo pipefail
out=${1:?usage: admin-client.sh OUTPUT}
: "${BROKER_ADMIN_PASSWORD:?BROKER_ADMIN_PASSWORD is not set}"
umask 077
cat > "$out" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="${BROKER_ADMIN_PASSWORD}";
PROPS
