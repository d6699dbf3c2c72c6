"""telecom-kappa: what every component shares (settings, clients, logging, the CLI)."""

__version__ = "0.1.0"
