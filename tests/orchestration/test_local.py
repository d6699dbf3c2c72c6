"""The pure parts of `kappa airflow`: environment, schedule checks, backfill arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.airflow import airflow
from kappa.settings import AirflowSettings, StackSettings
from orchestration import callables
from orchestration.exceptions import NotOnScheduleError
from orchestration.local import (
    LocalAirflow,
    backfill_args,
    dags_folder,
    floor_interval,
    on_schedule,
)

T0 = datetime(2026, 3, 2, 0, tzinfo=UTC)


def local(tmp_path: Path, **kw: object) -> LocalAirflow:
    return LocalAirflow(
        AirflowSettings(home=tmp_path / "airflow", port=18088, **kw),  # type: ignore[arg-type]
        StackSettings(state_dir=tmp_path),  # type: ignore[call-arg]
    )


def test_environment_points_airflow_at_the_home_and_the_dags(tmp_path: Path) -> None:
    env = local(tmp_path, spark_master="spark://m:7077").env(base={})
    home = tmp_path / "airflow"
    assert env["AIRFLOW_HOME"] == str(home)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(dags_folder())
    assert (dags_folder() / "kappa_replay.py").is_file()
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home / 'airflow.db'}"
    assert env["AIRFLOW__API__PORT"] == "18088"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18088/execution/"
    assert env["KAPPA_REPLAY_MASTER"] == "spark://m:7077"
    assert env["KAPPA_STATE_DIR"] == str(tmp_path.resolve())
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(str(home))


def test_the_home_follows_the_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = AirflowSettings(home=None, metrics_dir=None)  # whatever the environment says
    at = LocalAirflow(settings, StackSettings(state_dir=state))  # type: ignore[call-arg]
    assert at.home == (state / "airflow").resolve()
    env = at.env(base={})
    assert env["AIRFLOW_HOME"] == str((state / "airflow").resolve())
    assert env["KAPPA_AIRFLOW_METRICS_DIR"] == str((state / "airflow" / "metrics").resolve())


def test_start_date_is_pinned_at_the_first_start(tmp_path: Path) -> None:
    first = local(tmp_path).start_date()
    assert on_schedule(first)
    assert datetime.now(UTC) - first < timedelta(hours=6)
    assert local(tmp_path).start_date() == first  # read back, not recomputed
    assert local(tmp_path, start_date=T0).start_date() == T0


def test_schedule_arithmetic() -> None:
    assert floor_interval(datetime(2026, 3, 2, 17, 59, 59, tzinfo=UTC)) == T0 + timedelta(hours=12)
    assert on_schedule(T0 + timedelta(hours=6))
    assert not on_schedule(T0 + timedelta(hours=7))


def test_backfill_args_cover_the_intervals_of_the_range() -> None:
    args = backfill_args(
        T0, T0 + timedelta(hours=18), reprocess="completed", output="/x", dry_run=True
    )
    assert args[:4] == ["backfill", "create", "--dag-id", "kappa_replay"]
    assert args[args.index("--from-date") + 1] == T0.isoformat()
    # logical date = interval start: the last interval of [T0, T0+18h) starts at T0+12h
    assert args[args.index("--to-date") + 1] == (T0 + timedelta(hours=12)).isoformat()
    assert args[args.index("--reprocess-behavior") + 1] == "completed"
    assert json.loads(args[args.index("--dag-run-conf") + 1]) == {"output": "/x"}
    assert args[-1] == "--dry-run"


@pytest.mark.parametrize(
    ("start", "end"),
    [(T0 + timedelta(hours=1), T0 + timedelta(hours=6)), (T0 + timedelta(hours=6), T0)],
)
def test_backfill_refuses_ranges_off_the_schedule(start: datetime, end: datetime) -> None:
    with pytest.raises(NotOnScheduleError):
        backfill_args(start, end, reprocess="none", output=None, dry_run=False)


def test_cli_backfill_refusal_is_a_clear_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "kappa"),
            "airflow",
            "backfill",
            "--from",
            "2026-03-02T01:00:00Z",
            "--to",
            "2026-03-02T06:00:00Z",
        ],
        env={**os.environ, "KAPPA_AIRFLOW_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "kappa: error: 2026-03-02T01:00:00+00:00 is not on the six-hour schedule" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_env_prints_exports(tmp_path: Path) -> None:
    result = CliRunner().invoke(airflow, ["env"], env={"KAPPA_AIRFLOW_HOME": str(tmp_path / "af")})
    assert result.exit_code == 0, result.output
    lines = dict(line.removeprefix("export ").split("=", 1) for line in result.output.splitlines())
    assert lines["AIRFLOW_HOME"] == str(tmp_path / "af")
    assert "AIRFLOW__CORE__DAGS_FOLDER" in lines


def test_an_interval_is_closed_only_after_its_end_plus_the_margin() -> None:
    end = T0 + timedelta(hours=6)
    margin = timedelta(minutes=15)
    assert not callables.interval_closed(end, now=end, margin=margin)
    assert not callables.interval_closed(
        end, now=end + margin - timedelta(seconds=1), margin=margin
    )
    assert callables.interval_closed(end, now=end + margin, margin=margin)


def test_the_margin_defaults_to_the_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAPPA_AIRFLOW_LATENESS_MARGIN_S", raising=False)
    monkeypatch.setenv("KAPPA_REPLAY_LATENESS_MARGIN_S", "120")
    assert callables.lateness_margin() == timedelta(seconds=120)
    monkeypatch.setenv("KAPPA_AIRFLOW_LATENESS_MARGIN_S", "30")
    assert callables.lateness_margin() == timedelta(seconds=30)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        callables.utc(datetime(2026, 3, 2))


def test_the_airflow_spark_master_reaches_the_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAPPA_REPLAY_MASTER", raising=False)
    with callables.spark_master(AirflowSettings(spark_master="spark://m:7077")):
        assert os.environ["KAPPA_REPLAY_MASTER"] == "spark://m:7077"
    assert "KAPPA_REPLAY_MASTER" not in os.environ
    monkeypatch.setenv("KAPPA_REPLAY_MASTER", "local[1]")  # the replay's own setting wins
    with callables.spark_master(AirflowSettings(spark_master="spark://m:7077")):
        assert os.environ["KAPPA_REPLAY_MASTER"] == "local[1]"
