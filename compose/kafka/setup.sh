#!/usr/bin/env bash
# One-shot setup of the compose broker (the `kafka-init` service), idempotent:
#   1. a SCRAM-SHA-512 user per service, passwords from .env;
#   2. the pipeline's topics (KAPPA_TOPIC_*), same layout as `kappa stack up`;
#   3. ACLs that limit each service to its own topics, groups and
#      transactional ids (the broker denies whatever no ACL allows).
# It runs as the PLAIN `admin` super user on the internal BROKER listener.
set -euo pipefail

BIN=${KAFKA_BIN:-/opt/kafka/bin}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BOOTSTRAP=${BROKER_ADMIN_BOOTSTRAP:-kafka:9094}
CONF=${BROKER_ADMIN_CONFIG:-/tmp/kappa-admin.properties}
"$HERE/admin-client.sh" "$CONF"

RAW=${KAPPA_TOPIC_RAW:-cdr.raw}
VALID=${KAPPA_TOPIC_VALID:-cdr.valid}
DLQ=${KAPPA_TOPIC_DLQ:-cdr.dlq}
BILLING=${KAPPA_TOPIC_BILLING:-cdr.billing.5m}
NETWORK=${KAPPA_TOPIC_NETWORK:-cdr.network.5m}
LATE=${KAPPA_TOPIC_LATE:-cdr.late}
PARTITIONS=${KAPPA_TOPIC_PARTITIONS:-3}
RETENTION_MS=${KAPPA_TOPIC_RETENTION_MS:-315360000000}
VALIDATOR_GROUP=${KAPPA_VALIDATOR_GROUP_ID:-kappa-validator}
VALIDATOR_TXN_PREFIX=${VALIDATOR_TRANSACTIONAL_ID_PREFIX:-kappa-validator}

log() { echo "kafka-init: $*"; }

check_password() {
  local name=$1 value=$2
  if [[ -z $value ]]; then
    log "$name is empty; set it in compose/.env"; exit 1
  fi
  if [[ $value == change-me* ]]; then
    log "$name still holds the placeholder of .env.example; generate one (openssl rand -hex 24)"; exit 1
  fi
  if [[ ! $value =~ ^[A-Za-z0-9._~-]{12,}$ ]]; then
    log "$name: use 12 or more of A-Z a-z 0-9 . _ ~ - (it is embedded in SCRAM and JAAS strings)"; exit 1
  fi
}

declare -A USERS=(
  [producer]=${PRODUCER_PASSWORD:-}
  [validator]=${VALIDATOR_PASSWORD:-}
  [aggregate]=${AGGREGATE_PASSWORD:-}
  [replay]=${REPLAY_PASSWORD:-}
  [kafka-ui]=${KAFKA_UI_PASSWORD:-}
)
check_password BROKER_ADMIN_PASSWORD "$BROKER_ADMIN_PASSWORD"
for user in "${!USERS[@]}"; do
  check_password "password of $user" "${USERS[$user]}"
done

log "waiting for the broker at $BOOTSTRAP"
for _ in $(seq 1 60); do
  if "$BIN/kafka-broker-api-versions.sh" --bootstrap-server "$BOOTSTRAP" \
       --command-config "$CONF" >/dev/null 2>&1; then
    break
  fi
  sleep 2
done
"$BIN/kafka-broker-api-versions.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$CONF" >/dev/null

for user in "${!USERS[@]}"; do
  log "SCRAM-SHA-512 credentials for $user"
  "$BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$CONF" \
    --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=${USERS[$user]}]" >/dev/null
done

for topic in "$RAW" "$VALID" "$DLQ" "$BILLING" "$NETWORK" "$LATE"; do
  log "topic $topic ($PARTITIONS partitions, retention.ms=$RETENTION_MS)"
  "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$CONF" \
    --create --if-not-exists --topic "$topic" --partitions "$PARTITIONS" \
    --replication-factor 1 --config "retention.ms=$RETENTION_MS" >/dev/null
done

acl() {  # acl USER [kafka-acls.sh resource/operation arguments...]
  local user=$1; shift
  "$BIN/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$CONF" \
    --add --force --allow-principal "User:$user" "$@" >/dev/null
}
topics_ops() {  # topics_ops USER "OPERATION..." TOPIC...: one call for all of them
  local user=$1 ops=$2; shift 2
  local args=()
  for op in $ops; do args+=(--operation "$op"); done
  for topic in "$@"; do args+=(--topic "$topic"); done
  acl "$user" "${args[@]}"
}
group_prefixes() {  # group_prefixes USER PREFIX...: join, commit and describe groups PREFIX*
  local user=$1; shift
  local args=()
  for prefix in "$@"; do args+=(--group "$prefix"); done
  acl "$user" --resource-pattern-type prefixed "${args[@]}" --operation Read --operation Describe
}

log "ACLs: producer writes $RAW"
topics_ops producer "Write Describe" "$RAW"

log "ACLs: validator reads $RAW, writes $VALID and $DLQ in transactions"
topics_ops validator "Read Describe" "$RAW"
topics_ops validator "Write Read Describe" "$VALID" "$DLQ"
# its group (+ -dedup-rebuild), and the DLQ, ledger and quality tools' groups
group_prefixes validator "$VALIDATOR_GROUP" kappa-dlq kappa-ledger kappa-quality
# its transactional ids (instance -0, -1, ... and their -redrive)
acl validator --resource-pattern-type prefixed --transactional-id "$VALIDATOR_TXN_PREFIX" \
  --operation Write --operation Describe

log "ACLs: aggregate reads $VALID, writes $BILLING, $NETWORK, $LATE"
topics_ops aggregate "Read Describe" "$VALID"
topics_ops aggregate "Write Describe" "$BILLING" "$NETWORK" "$LATE"
group_prefixes aggregate spark-kafka-source

log "ACLs: replay (Airflow, parity, ledger) reads the log"
topics_ops replay "Read Describe DescribeConfigs" "$VALID"
topics_ops replay "Read Describe" "$RAW" "$DLQ" "$BILLING" "$NETWORK" "$LATE"
group_prefixes replay spark-kafka-relation kappa-replay kappa-ledger kappa-parity

log "ACLs: kafka-ui reads every pipeline topic (it runs read-only)"
topics_ops kafka-ui "Read Describe DescribeConfigs" "$RAW" "$VALID" "$DLQ" "$BILLING" "$NETWORK" "$LATE"
acl kafka-ui --cluster --operation Describe --operation DescribeConfigs
acl kafka-ui --group '*' --operation Describe
group_prefixes kafka-ui kafka-ui

log "done"
