"""Benchmarks: each prints its figures beside the comparison it is judged by, in one run (bench/README.md).

Run from the repository root as ``python -m bench.NAME``; they never gate CI."""
