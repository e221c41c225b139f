"""Tiny configs for checks that must run in seconds on a CPU (tests, layout benchmarks)."""
