"""Benchmarks that run Akasha and its peer baseline in the same run and report ratios as JSON."""
