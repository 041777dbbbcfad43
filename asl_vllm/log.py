"""The plugin's logger, placed under vLLM's `vllm` logger so vLLM's log configuration
(format, level, `VLLM_LOGGING_LEVEL`) shows its lines in every process."""

import logging

logger = logging.getLogger("vllm.asl_vllm")
