"""Triton kernels (installed as `asl_vllm.kernels`)."""
