"""Accuracy benchmarks on in-process engines: the needle grid and RULER-style tasks, their scoring and tables."""
