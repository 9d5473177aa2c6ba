"""Benchmarks: `python -m src.bench.<name>`; they print figures and are never run as timed tests."""
