#!/usr/bin/env bash
# make demo: start the local stack, run the pipeline for a few minutes, print a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
KAPPA=.venv/bin/kappa
export KAPPA_PRODUCER_METRICS_PORT=${KAPPA_PRODUCER_METRICS_PORT:-0}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting the local stack"
$KAPPA stack up

step "producing a minute of CDRs at 10/s with 2% faults"
$KAPPA produce --duration 60 --rate 10 --bad-rate 0.02

step "summary"
$KAPPA topics --exact
