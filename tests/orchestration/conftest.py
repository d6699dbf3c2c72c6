"""Fixtures of the orchestration tests: a throwaway Airflow home, set before Airflow is imported.

Airflow reads its configuration once, when it is first imported, so no test module
imports it at collection time: the fixtures below set ``AIRFLOW_HOME`` and friends
(for this test session only: they are undone at its end), then import it.
"""

# Imports inside functions: Airflow is imported after the fixtures set its environment
from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "orchestration" / "dags"
DAG_FILE = DAGS / "kappa_replay.py"


@pytest.fixture(scope="package", autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Importing Airflow adds a root handler and lowers the root level: undo it after us."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty AIRFLOW_HOME with SQLite metadata; the environment points Airflow at it."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "KAPPA_AIRFLOW_HOME": str(home),
        "KAPPA_AIRFLOW_METRICS_DIR": str(home / "metrics"),
    }
    if "airflow.configuration" in sys.modules:
        from airflow.configuration import AIRFLOW_HOME

        if str(home) != AIRFLOW_HOME:
            pytest.fail(
                f"Airflow was imported before its test home was set (AIRFLOW_HOME="
                f"{AIRFLOW_HOME}); import it inside fixtures and tests only"
            )
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield home


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """``airflow db migrate`` once per session (it also writes airflow.cfg)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return airflow_home


@pytest.fixture(scope="session")
def dagbag(airflow_home: Path) -> Any:
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS), include_examples=False)


@pytest.fixture(scope="session")
def kappa_dag(dagbag: Any) -> Any:
    return dagbag.dags["kappa_replay"]
