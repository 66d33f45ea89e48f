"""Benchmarks: each module has ``main() -> dict`` and prints its figures when run as a script."""
