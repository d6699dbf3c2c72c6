"""telecom-kappa's base, shared by every layer: settings, clients, logging, errors, topics."""

import warnings

__version__ = "0.1.0"


def _quiet_authlib() -> None:
    """The registry client imports authlib's deprecated httpx integration, which warns
    on every start; authlib's module sets an ``always`` filter that this one follows."""
    try:
        from authlib.deprecate import AuthlibDeprecationWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)


_quiet_authlib()
