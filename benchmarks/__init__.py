"""Benchmarks: full-size runs (``python -m benchmarks.NAME``) and CI-size checks (``run --ci``)."""
