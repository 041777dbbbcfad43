"""What the pruner's stat logger reads of vLLM's Prometheus logger.

vLLM 0.32, `PrometheusStatLogger.__init__` (vllm/v1/metrics/loggers.py) sets
`per_engine_labelvalues`: per engine index, the label values (model name,
engine index) of every `vllm:` series it creates. The pruner's series take the
same values, so they line up with vLLM's on `/metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def engine_label_values(stat_logger: Any) -> Mapping[int, list[object]]:
    """Per engine index, the label values (`model_name`, `engine`) of the logger's series
    (`PrometheusStatLogger.per_engine_labelvalues`)."""
    return stat_logger.per_engine_labelvalues
