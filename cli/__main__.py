"""``python -m cli`` is the ``kappa`` console script."""

from cli import main

if __name__ == "__main__":  # not when a spawned worker (kappa produce --workers) imports it
    main()
