"""Kafka headers the validator writes, and how to read them back.

Every record on ``cdr.valid`` and ``cdr.dlq`` carries its source coordinates
(``kappa.src``: ``topic:partition:offset`` of the raw record), so that the
ledger can match raw offsets without decoding values and the dedup state can
be rebuilt from keys and headers only. A redriven record also carries
``kappa.redriven`` (the dead letter's own ``topic:partition:offset``).
"""

from __future__ import annotations

from collections.abc import Sequence

SOURCE = "kappa.src"
REDRIVEN = "kappa.redriven"
SUITE = "kappa.suite"

Headers = Sequence[tuple[str, bytes | str | None]] | None


def coords(topic: str, partition: int, offset: int) -> bytes:
    return f"{topic}:{partition}:{offset}".encode()


def parse_coords(value: bytes | str | None) -> tuple[str, int, int] | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    topic, _, rest = text.rpartition(":")
    topic, _, part = topic.rpartition(":")
    try:
        return topic, int(part), int(rest)
    except ValueError:
        return None


def get(headers: Headers, name: str) -> bytes | str | None:
    if not headers:
        return None
    for key, value in headers:
        if key == name:
            return value
    return None


def source_of(headers: Headers) -> tuple[str, int, int] | None:
    return parse_coords(get(headers, SOURCE))


def redriven_from(headers: Headers) -> tuple[str, int, int] | None:
    return parse_coords(get(headers, REDRIVEN))
