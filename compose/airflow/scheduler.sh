#!/usr/bin/env bash
# The Airflow scheduler of the compose deployment. With the LocalExecutor its
# tasks (replay, verify, metrics) run in this container, so the DAG's run
# metrics are written here, and served here to Prometheus (airflow-scheduler:9107)
# by `kappa airflow metrics-exporter`, beside the scheduler.
set -uo pipefail
kappa airflow metrics-exporter &
exporter=$!
airflow scheduler &
scheduler=$!
stop() { kill -TERM "$exporter" "$scheduler" 2>/dev/null || true; }
trap stop TERM INT
# Stop (and let compose restart the container) when either process ends.
wait -n "$exporter" "$scheduler"
status=$?
stop
wait
exit "$status"
