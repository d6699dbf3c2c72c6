"""Benchmarks, run on demand: `python -m bench.<name>`; figures go to bench/results/."""
