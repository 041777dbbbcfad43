"""Seeded requests whose sample a chunked prefill step discards, on the CPU build.

vLLM 0.32, `GPUModelRunner._bookkeeping_sync` (vllm/v1/worker/gpu_model_runner.py):
after sampling, a request whose token is discarded (a prefill chunk that is not
its last, `discard_request_mask`) and that has its own generator (a `seed`)
has the generator rewound with `set_offset(get_offset() - 4)`. A CPU
`torch.Generator` has no offset and raises, which stops the engine: on the CPU
build any seeded request whose prompt spans several steps does. Here those
generators sit the step out instead (`InputBatch.generators`, which the step's
sampling metadata holds by reference): the sample made without them is
discarded anyway, and each generator is consumed only by the samples that are
kept, which is what the rewind restores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def discarded_samples_without_generators(runner: Any) -> Iterator[None]:
    """Within the block (the step's sampling), requests whose sample is discarded have no generator."""
    batch = runner.input_batch
    rows = np.nonzero(runner.discard_request_mask.np[: batch.num_reqs])[0]
    held = {int(row): batch.generators.pop(int(row)) for row in rows if int(row) in batch.generators}
    try:
        yield
    finally:
        batch.generators.update(held)
