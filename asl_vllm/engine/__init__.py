"""Engine integration: the pruned layer loop, KV compaction, and block freeing.

Loaded only inside vLLM processes (worker and scheduler classes are named in
the engine config by `asl_vllm.engine_settings`).
"""
