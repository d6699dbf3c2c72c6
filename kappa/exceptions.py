"""The root of every error this project raises on purpose, and the exit codes.

``kappa`` exits with:

- 0: done;
- 1: the command failed (a job error, a check that did not pass);
- 2: a bad flag or setting (the message names it);
- 3: a service the command needs cannot be reached (Kafka, the Schema Registry,
  HDFS, the Spark master) or Spark itself did not start;
- 130: interrupted (Ctrl-C).
"""

EXIT_FAILED = 1
EXIT_BAD_SETTING = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class KappaError(Exception):
    """Root of every error this project raises on purpose."""

    exit_code = EXIT_FAILED


class ServiceUnreachableError(KappaError):
    """A service the command needs does not answer: ``service`` at ``address``."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, service: str, address: str, cause: str, hint: str) -> None:
        self.service = service
        self.address = address
        self.cause = cause
        self.hint = hint
        super().__init__(f"cannot reach {service} at {address} ({cause}); {hint}")


class TopicMissingError(KappaError):
    """``topics`` do not exist (or have no partitions) on the cluster at ``bootstrap``."""

    def __init__(self, topics: list[str], bootstrap: str, hint: str = "") -> None:
        self.topics = list(topics)
        self.bootstrap = bootstrap
        self.hint = hint
        names = ", ".join(self.topics)
        verb = "does" if len(self.topics) == 1 else "do"
        tail = f"; {hint}" if hint else ""
        super().__init__(f"topic(s) {names} {verb} not exist on {bootstrap}{tail}")

    @property
    def topic(self) -> str:
        """The first missing topic (most checks ask for one)."""
        return self.topics[0]
