"""Kernel tests run Triton's interpreter on CPU tensors: it must be on before triton is imported."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
