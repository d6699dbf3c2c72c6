#!/usr/bin/env bash
# One-shot (the `airflow-init` service): migrates the metadata database and
# writes the simple auth manager's password file from $AIRFLOW_ADMIN_PASSWORD,
# so that no default or generated password exists.
set -euo pipefail
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD is not set}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the passwords file path is not set}"
if [[ $AIRFLOW_ADMIN_PASSWORD == change-me* || ${#AIRFLOW_ADMIN_PASSWORD} -lt 12 ]]; then
  echo "airflow-init: set AIRFLOW_ADMIN_PASSWORD in compose/.env (12+ characters, not the placeholder)" >&2
  exit 1
fi
airflow db migrate
python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
users = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
names = [u.split(":")[0] for u in users.split(",") if u]
path.parent.mkdir(parents=True, exist_ok=True)
old = os.umask(0o077)
try:
    path.write_text(json.dumps({n: os.environ["AIRFLOW_ADMIN_PASSWORD"] for n in names}) + "\n")
finally:
    os.umask(old)
print(f"airflow-init: password file written for {', '.join(names)}")
PY
