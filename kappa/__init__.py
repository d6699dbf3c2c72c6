"""telecom-kappa's base, shared by every layer: settings, clients, logging, errors, topics."""

__version__ = "0.1.0"
