"""How long a benchmark plan takes on the reference machine, printed before it starts.

The reference: the embedded SmolLM2-135M-Instruct (30 layers) on a 2-core CPU (vLLM 0.32
CPU build), where an unpruned prefill took about 5 s at 4k, 10 s at 6k and 17 s at 8k
tokens, a decode step 25-33 ms, and a compiled engine start up to 150 s. Pruned
prefills are costed from the layers they run at full length: scoring adds up to 13%
(asl where no layer passes tau, measured), fixed-layer methods run the layers after
their layer on select-k tokens (fastkv) or re-run the model on them (gemfilter);
single-pass asl is costed as if no layer passed tau, and asl two-pass as if it
selected at 70% of the depth (observed: layers 15-24) and re-ran on select-k tokens.
Decode is costed one request at a time. The estimate is an upper bound on a quiet
machine; other work on the same cores stretches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from asl_vllm.config import REFERENCE_NUM_LAYERS
from benchmarks.common.configs import Config

# Unpruned prefill seconds = a + c * (tokens / 1000)^2, the curve through the measured
# 5 s at 4k, 10 s at 6k and 17 s at 8k tokens.
PREFILL_CONSTANT_S = 1.0
PREFILL_QUADRATIC_S = 0.25
# Decode step of one request = a + b * (context tokens / 1000): 24.7 ms with 1k tokens of KV
# and 33.2 ms with 8k (the measured pruned and unpruned steps at 8k).
DECODE_STEP_S = 0.0235
DECODE_STEP_PER_1K_S = 0.0012
# A default-mode (compiled) start with a warm compile cache; a cold one took about 150 s.
ENGINE_START_SECONDS = 90.0
SCORING_OVERHEAD = 1.13
NUM_LAYERS = 30
ADAPTIVE_LAYER_FRACTION = 0.7
DEFAULT_SELECT_K = 2048


def prefill_seconds(length: int) -> float:
    """Unpruned prefill time of a `length`-token prompt."""
    return PREFILL_CONSTANT_S + PREFILL_QUADRATIC_S * (length / 1000) ** 2


def decode_step_seconds(length: int) -> float:
    """One decode step of one request with `length` tokens of KV (an unbatched upper bound)."""
    return DECODE_STEP_S + DECODE_STEP_PER_1K_S * length / 1000


def prefill_fraction(config: Config, length: int) -> float:
    """A config's prefill time as a fraction of the unpruned one (an upper estimate)."""
    if not config.pruner_class.prunes:
        return 1.0
    kept = min(1.0, (config.select_k or DEFAULT_SELECT_K) / length)
    reference_layer = config.pruner_class.reference_fixed_layer
    if reference_layer is not None:
        # The plugin's default layer on 30 layers; a re-run costs select-k tokens in every layer.
        full = (round(reference_layer * NUM_LAYERS / REFERENCE_NUM_LAYERS) + 1) / NUM_LAYERS
        rest = kept if config.two_pass else (1 - full) * kept
        return SCORING_OVERHEAD * full + rest
    if not config.two_pass:
        return SCORING_OVERHEAD
    return max(SCORING_OVERHEAD, SCORING_OVERHEAD * ADAPTIVE_LAYER_FRACTION + kept)


@dataclass(frozen=True)
class Work:
    """`count` requests of one config at one prompt length, each generating up to `max_tokens`."""

    config: Config
    length: int
    max_tokens: int
    count: int = 1

    @property
    def seconds(self) -> float:
        one = prefill_seconds(self.length) * prefill_fraction(self.config, self.length)
        return self.count * (one + self.max_tokens * decode_step_seconds(self.length))


def estimate(work: Iterable[Work], engines: int) -> float:
    """Seconds for all the work plus the engine starts."""
    return sum(item.seconds for item in work) + engines * ENGINE_START_SECONDS


def describe(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"
