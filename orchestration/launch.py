"""``python -m orchestration.launch --kappa-service=NAME@HOME <airflow args>``.

Runs the ``airflow`` command with a marker on its command line, so that the pid
files of ``kappa airflow up`` are only ever believed for the processes they name.
"""

from __future__ import annotations

import sys

MARKER_PREFIX = "--kappa-service="


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith(MARKER_PREFIX)]
    sys.argv = ["airflow", *args]
    from airflow.__main__ import main as airflow_main  # after sys.argv is set

    sys.exit(airflow_main())  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
