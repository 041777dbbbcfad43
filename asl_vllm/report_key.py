"""The key a request's decision report travels under, from the engine to the client.

The scheduler puts `PruneDecision.report()` (`asl_vllm.engine.decisions`) in
a request's `EngineCoreOutput.kv_transfer_params` under `REPORT_KEY`, beside
any KV connector's params; vLLM carries that dict to the API server's
`RequestOutput` and into the OpenAI response. The frontend's readers
(`asl_vllm.vllm_compat.request_outputs`, `iteration_stats`,
`asl_vllm.stream_reports`) find it there. A module of its own, importing
nothing, so that the engine and the frontend share it without importing each other.
"""

from __future__ import annotations

# Key of the decision report in `kv_transfer_params` (engine output, RequestOutput, HTTP response).
REPORT_KEY = "kv_pruner"
