"""Errors of the orchestration layer."""

from kappa.exceptions import KappaError


class OrchestrationError(KappaError):
    """The DAG or the local Airflow could not do what was asked."""


class AirflowNotInstalledError(OrchestrationError):
    """The ``airflow`` command is not in the virtual environment."""


class AirflowStartError(OrchestrationError):
    """A local Airflow component exited or did not answer in time."""


class NotOnScheduleError(OrchestrationError):
    """A time is not on the DAG's six-hour schedule."""
