"""Benchmarks against the OpenAI server (`vllm serve`): latency, KV held and capacity, and memory pressure."""
