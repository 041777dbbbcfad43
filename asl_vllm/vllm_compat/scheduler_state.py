"""What the pruning scheduler reads of vLLM's scheduler state.

vLLM 0.32, `Scheduler` (vllm/v1/core/sched/scheduler.py) sets up in `__init__`
and keeps current through `schedule()` and `update_from_output()`:
`requests`, every unfinished request by id (a `Request`, vllm/v1/request.py);
`running`, the running queue; and `kv_cache_manager`, its `KVCacheManager`
(vllm/v1/core/kv_cache_manager.py), whose `usage` property is the fraction
of the block pool in use. They are the scheduler's own state, not an
interface for plugins; these functions are the plugin's only reads of it (the
per-group managers behind `kv_cache_manager`: `kv_cache_managers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asl_vllm.vllm_compat.kv_cache_managers import group_managers


def requests_by_id(scheduler: Any) -> Mapping[str, Any]:
    """Every request the scheduler holds (waiting, running, preempted), by id (`Scheduler.requests`)."""
    return scheduler.requests


def running_requests(scheduler: Any) -> list[Any]:
    """The requests in the running queue (`Scheduler.running`), in its order."""
    return scheduler.running


def pool_usage(scheduler: Any) -> float:
    """The fraction of the block pool in use, 0.0 to 1.0 (`Scheduler.kv_cache_manager.usage`)."""
    return scheduler.kv_cache_manager.usage


def kv_group_managers(scheduler: Any) -> list[Any]:
    """The scheduler's manager of each KV cache group, in group order (`Scheduler.kv_cache_manager`'s)."""
    return group_managers(scheduler.kv_cache_manager)
