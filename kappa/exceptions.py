"""The root of every error this project raises on purpose."""


class KappaError(Exception):
    """Root of every error this project raises on purpose."""
