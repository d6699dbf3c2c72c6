"""Helpers shared by the subcommands."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from pydantic_settings import BaseSettings


def env_name(cls: type[BaseSettings], field: str) -> str:
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def env_help(text: str, cls: type[BaseSettings], field: str) -> str:
    return f"{text} [env: {env_name(cls, field)}]"


class UtcTime(click.ParamType[datetime, Any]):
    """An ISO-8601 instant; a time without an offset is taken as UTC."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        text = str(value).strip()
        if text == "now":
            return datetime.now(UTC)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time such as 2026-01-01T00:00:00Z", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


UTC_TIME = UtcTime()
