"""``python -m cli`` is the ``kappa`` console script."""

from cli import main

main()
