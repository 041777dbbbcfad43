"""asl-vllm: layer-wise KV-cache token pruning with an adaptive selection layer.

Kept import-light: every vLLM process imports it through the plugin entry point.
"""

import os as _os

__version__ = "0.1.0"

# Installed, `kernels/` is the subpackage `asl_vllm.kernels` (setup.py's package_dir).
# In a source checkout it sits beside this package: let the same import find it.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "kernels", "__init__.py")) and _os.path.isfile(
    _os.path.join(_checkout, "setup.py")
):
    __path__.append(_checkout)
