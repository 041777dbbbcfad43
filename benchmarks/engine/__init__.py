"""Benchmarks on in-process engines driven step by step: TTFT, TPOT and KV held against unmodified vLLM."""
