"""The decision report on a request's final `RequestOutput`, also when the frontend ends it on a stop string.

The engine puts the report on a request's first and last `EngineCoreOutput`
(`kv_transfer_params["kv_pruner"]`). When the frontend's detokenizer finds a
stop string, the frontend finishes the request itself and asks the engine to
abort it, so the last engine output never arrives and the final reply would
lack the report. vLLM 0.32: `RequestState.make_request_output`
(vllm/v1/engine/output_processor.py), called for every engine output of a
request. The wrapper keeps the latest report a request's outputs carried on its
`RequestState` and adds it, beside any KV connector's params, to a finishing
output that has none. Installed with the stream wrappers, by the first
`create_engine_config` of a pruning engine.
"""

from __future__ import annotations

import functools
from typing import Any

from asl_vllm.report_key import REPORT_KEY
from asl_vllm.vllm_compat.patching import is_patched, marked

# RequestState attribute: the latest report the request's engine outputs carried.
_STATE_REPORT_ATTR = "kv_pruner_report"


def wrap_request_outputs() -> None:
    from vllm.v1.engine.output_processor import RequestState

    original = RequestState.make_request_output
    if is_patched(original):
        return

    @marked
    @functools.wraps(original)
    def make_request_output(
        self: Any,
        new_token_ids: Any,
        pooling_output: Any,
        finish_reason: Any,
        stop_reason: Any,
        kv_transfer_params: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        # Called for every output of every request: explicit parameters, no per-call signature binding.
        if kv_transfer_params and REPORT_KEY in kv_transfer_params:
            setattr(self, _STATE_REPORT_ATTR, kv_transfer_params[REPORT_KEY])
        elif finish_reason is not None:
            report = getattr(self, _STATE_REPORT_ATTR, None)
            if report is not None:
                kv_transfer_params = {**(kv_transfer_params or {}), REPORT_KEY: report}
        return original(
            self, new_token_ids, pooling_output, finish_reason, stop_reason, kv_transfer_params, *args, **kwargs
        )

    RequestState.make_request_output = make_request_output
