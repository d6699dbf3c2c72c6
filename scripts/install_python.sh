#!/usr/bin/env bash
# Creates .venv with the pinned Python dependencies. Idempotent: a stamp keyed
# by the hash of pyproject.toml and constraints.txt makes a second run instant.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.kappa-install-stamp"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null; then
  echo "install: $PYTHON not found; Python 3.11 is required" >&2
  exit 1
fi

echo "install: Python dependencies into $VENV (first run takes a few minutes)"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
log="$VENV/install.log"
if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
       "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev]"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "install: pip failed; the whole log is in $log" >&2
  exit 1
fi
echo "$want" > "$stamp"
