"""Recipe (c) of docs/ARCHITECTURE.md, a new ``kappa`` command, followed in process.

A click command written as the recipe says (settings read once, a flag that wins over its
``KAPPA_*`` variable and names it in its help, expected failures as ``KappaError``) is
added to the ``kappa`` group as ``cli._register`` adds the project's commands, then run
with click's ``CliRunner`` and through ``cli.main``, the console script. The fixture puts
the group's commands, the loggers' levels and handlers, the warning filters and the SIGINT
handler back as they were.
"""

from __future__ import annotations

import logging
import signal
import warnings
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

import cli as kappa_cli
from cli.options import env_help
from kappa.exceptions import EXIT_BAD_SETTING, EXIT_FAILED, KappaError
from kappa.settings import TopicSettings

NAME = "topic-layout"


@click.command(NAME)
@click.option(
    "--partitions",
    type=int,
    default=None,
    help=env_help("partitions each topic is created with", TopicSettings, "partitions"),
)
@click.option("--only", default=None, help="one pipeline topic")
def topic_layout(partitions: int | None, only: str | None) -> None:
    """The pipeline's topics and the partitions they are created with."""
    overrides = {} if partitions is None else {"partitions": partitions}
    topics = TopicSettings(**overrides)  # read once, here; a flag wins over KAPPA_TOPIC_*
    names = topics.all()
    if only is not None and only not in names:
        msg = f"{only} is not a pipeline topic; pipeline topics: {', '.join(names)}"
        raise KappaError(msg)
    for name in [only] if only else names:
        click.echo(f"{name} {topics.partitions}")


def _logger_levels() -> dict[str, int]:
    return {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }


@pytest.fixture
def kappa_group() -> Iterator[click.Group]:
    """The ``kappa`` group with the new command added (what ``_register`` does); everything
    the group or ``main`` touches globally is restored afterwards."""
    group = kappa_cli.cli
    commands = dict(group.commands)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = _logger_levels()
    sigint = signal.getsignal(signal.SIGINT)  # main() may install its own handler
    assert NAME not in group.commands
    group.add_command(topic_layout)
    try:
        yield group
    finally:
        group.commands.clear()
        group.commands.update(commands)
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in _logger_levels():  # those made meanwhile go back to NOTSET
            logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))
        signal.signal(signal.SIGINT, sigint)


def test_the_command_runs_under_kappa(kappa_group: click.Group) -> None:
    runner = CliRunner()
    env = {"KAPPA_TOPIC_PARTITIONS": "5", "KAPPA_TOPIC_RAW": "raw.docs"}
    done = runner.invoke(kappa_group, [NAME], env=env)
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert "raw.docs 5" in lines
    assert len(lines) == len(TopicSettings().all())

    flag = runner.invoke(kappa_group, [NAME, "--partitions", "7", "--only", "raw.docs"], env=env)
    assert flag.exit_code == 0, flag.output
    assert flag.output.splitlines() == ["raw.docs 7"]

    helped = runner.invoke(kappa_group, [NAME, "--help"])
    assert helped.exit_code == 0
    assert "[env: KAPPA_TOPIC_PARTITIONS]" in " ".join(helped.output.split())

    listed = runner.invoke(kappa_group, ["--help"])
    assert NAME in listed.output


def _kappa(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``kappa ARGV`` as the console script runs it: exit code, stdout, stderr."""
    with warnings.catch_warnings():  # main() quiets a few warnings for the process
        try:
            kappa_cli.main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_failures_end_in_one_line_and_an_exit_code(
    kappa_group: click.Group, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAPPA_LOG_LEVEL", "WARNING")
    monkeypatch.delenv("KAPPA_TOPIC_PARTITIONS", raising=False)
    code, out, err = _kappa([NAME, "--only", "cdr.raw"], capsys)
    assert (code, out) == (0, f"cdr.raw {TopicSettings().partitions}\n")
    # main() registers the project's commands beside it: the new name is its own.
    assert {"produce", "validate", NAME} <= set(kappa_group.commands)

    code, out, err = _kappa([NAME, "--only", "nope"], capsys)
    assert code == EXIT_FAILED
    assert err.splitlines() == [
        "kappa: error: nope is not a pipeline topic; pipeline topics: "
        + ", ".join(TopicSettings().all())
    ]

    code, out, err = _kappa([NAME, "--partitions", "0"], capsys)
    assert code == EXIT_BAD_SETTING
    (line,) = err.splitlines()
    assert line.startswith("kappa: error: invalid setting: KAPPA_TOPIC_PARTITIONS: ")
    assert "Traceback" not in err
