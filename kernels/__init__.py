"""Triton kernels of the scoring core (installed as `asl_vllm.kernels`).

Each kernel module holds the `@triton.jit` function and a thin launcher that
checks shapes and picks the grid; the torch references they are tested against
live in `asl_vllm.scoring.paged`. Import this package only where Triton runs
(CUDA, or `TRITON_INTERPRET=1` set before triton is imported).
"""
