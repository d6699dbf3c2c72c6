#!/usr/bin/env bash
# Debian packages the local stack uses. Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v java >/dev/null || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v docker-compose >/dev/null || need+=(docker-compose)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install: missing Debian packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "install: apt packages ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's prometheus package starts a system service; the project runs its own.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
  fi
  pkill -x prometheus-node-exporter 2>/dev/null || true
fi
