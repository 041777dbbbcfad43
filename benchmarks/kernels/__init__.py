"""The scoring kernels timed against their torch path; imports only torch, triton and the scoring core (no vLLM)."""
