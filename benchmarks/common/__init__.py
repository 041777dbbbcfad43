"""Shared by every benchmark: configurations, flags, results files, statistics, plots, the time plan."""
