"""Benchmarks: figures as ratios against a reference measured in the same run. Never run in CI."""
