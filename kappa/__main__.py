"""``python -m kappa`` is the ``kappa`` console script."""

from kappa.cli import main

main()
