"""The ``kappa`` console script: one subcommand per job.

Every setting can come from a ``KAPPA_*`` environment variable (``kappa
settings`` lists them with their values); a flag, where there is one, wins.
Failures end in one line, ``kappa: error: ...``, and an exit code
(``kappa.exceptions``: 1 failed, 2 bad flag or setting, 3 a service unreachable,
130 interrupted). ``kill -USR1`` prints every thread's Python stack on stderr.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import signal
import sys
import threading
import warnings
from types import FrameType
from typing import Any

import click
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from kappa.exceptions import EXIT_BAD_SETTING, EXIT_INTERRUPTED, KappaError
from kappa.logging import configure_logging

EPILOG = (
    "Settings come from KAPPA_* environment variables, e.g. KAPPA_KAFKA_BOOTSTRAP, "
    "KAPPA_SCHEMA_REGISTRY_URL, KAPPA_STATE_DIR; `kappa settings` lists every one."
)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    envvar="KAPPA_LOG_LEVEL",
    show_envvar=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.version_option(package_name="telecom-kappa")
def cli(log_level: str) -> None:
    """telecom-kappa: a streaming-first Kappa pipeline for call detail records."""
    configure_logging(log_level)


def _register() -> None:
    from cli import produce as produce_cmd
    from cli import settings as settings_cmd
    from cli import topics as topics_cmd

    cli.add_command(produce_cmd.produce)
    cli.add_command(settings_cmd.settings)
    cli.add_command(topics_cmd.topics)
    for module, name in (
        ("cli.stack", "stack"),
        ("cli.validate", "validate"),
        ("cli.validate", "dlq"),
        ("cli.validate", "ledger"),
        ("cli.validate", "quality"),
        ("cli.aggregate", "aggregate"),
        ("cli.replay", "replay"),
        ("cli.replay", "parity"),
        ("cli.airflow", "airflow"),
    ):
        try:
            mod = __import__(module, fromlist=[name])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        cli.add_command(getattr(mod, name))


class _Interrupt:
    """Whether this process was interrupted (Ctrl-C, SIGINT): a terminal sends it to
    the whole process group, so Spark's JVM dies with us and the py4j or Spark errors
    that follow are consequences, reported as the interruption they are."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: FrameType | None) -> None:
        cls.seen = True
        # What comes next is py4j losing its call or its JVM: not worth a traceback
        # (py4j logs some of it on the root logger).
        logging.getLogger("py4j").setLevel(logging.CRITICAL)
        logging.getLogger().addFilter(cls.not_py4j)
        signal.default_int_handler(signum, frame)

    @staticmethod
    def not_py4j(record: logging.LogRecord) -> bool:
        return "py4j" not in record.pathname


def main(argv: list[str] | None = None) -> Any:
    # confluent-kafka's registry client imports authlib, which warns on import.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    _register()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _Interrupt.handler)
        _stacks_on_usr1()
    try:
        return cli.main(args=argv, prog_name="kappa", standalone_mode=False)
    except SystemExit as exc:
        if _Interrupt.seen and exc.code not in (0, None):
            _interrupted()
        raise
    except BaseException as exc:
        if _Interrupt.seen or isinstance(exc, (KeyboardInterrupt, click.exceptions.Abort)):
            _interrupted()
        _fail(exc)


def _stacks_on_usr1() -> None:
    """``kill -USR1 <pid>``: every thread's Python stack on the process's stderr, and it
    goes on (what jstack is to a JVM: where a command that seems stuck waits)."""
    err = sys.__stderr__
    if err is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr without a file
        faulthandler.register(signal.SIGUSR1, file=err, all_threads=True, chain=False)


def _interrupted() -> None:
    click.echo("kappa: interrupted", err=True)
    sys.exit(EXIT_INTERRUPTED)


def _fail(exc: BaseException) -> None:
    """One line and the exit code for ``exc``; re-raised if it means nothing known."""
    if isinstance(exc, click.ClickException):
        exc.show()
        sys.exit(exc.exit_code)
    if isinstance(exc, ValidationError):
        click.echo(f"kappa: error: invalid setting: {_describe(exc)}", err=True)
        sys.exit(EXIT_BAD_SETTING)
    if isinstance(exc, KappaError):
        click.echo(f"kappa: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    from cli.errors import explain

    known = explain(exc)
    if known is None:
        raise exc
    click.echo(f"kappa: error: {known}", err=True)
    sys.exit(known.exit_code)


def _describe(exc: ValidationError) -> str:
    parts = []
    prefix = ""
    title = exc.title
    from kappa import settings as s

    for cls in vars(s).values():
        if isinstance(cls, type) and issubclass(cls, BaseSettings) and cls.__name__ == title:
            prefix = str(cls.model_config.get("env_prefix", ""))
    for err in exc.errors():
        field = ".".join(str(x) for x in err["loc"])
        parts.append(f"{prefix}{field}".upper() + f": {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
