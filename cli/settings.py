"""``kappa settings``: every KAPPA_* variable, its value now and what it means."""

from __future__ import annotations

import json

import click
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from kappa import settings as s


def settings_classes() -> list[type[BaseSettings]]:
    return [
        c
        for c in vars(s).values()
        if isinstance(c, type) and issubclass(c, BaseSettings) and c is not BaseSettings
    ]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object, for scripts")
def settings(as_json: bool) -> None:
    """List every KAPPA_* setting with its current value."""
    rows = []
    for cls in settings_classes():
        current = cls()
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            value = getattr(current, name)
            shown = "***" if isinstance(value, SecretStr) else ("" if value is None else str(value))
            rows.append((f"{prefix}{name}".upper(), shown, field.description or ""))
    if as_json:
        click.echo(json.dumps({k: v for k, v, _ in rows}, indent=2))
        return
    width = max(len(r[0]) for r in rows)
    for name, value, desc in rows:
        click.echo(f"{name:<{width}}  {value:<40}  {desc}")
