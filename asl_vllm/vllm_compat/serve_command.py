"""`vllm serve` ends on a bad pruner setting with one line, as argparse's errors do.

vLLM 0.32: `ServeSubcommand.cmd` (vllm/entrypoints/cli/serve.py), the function
the `vllm serve` command runs. Wrapped by `asl_vllm_startup` as soon as that
module is imported, before vLLM's CLI binds it.
"""

from __future__ import annotations

import argparse
import functools
import sys

from asl_vllm.config import PrunerConfigError
from asl_vllm.vllm_compat.patching import is_patched, marked


def wrap_serve_command() -> None:
    """`vllm serve` is the CLI entry point that decides how a bad pruner setting ends: one line, exit 1."""
    from vllm.entrypoints.cli.serve import ServeSubcommand

    original = ServeSubcommand.cmd
    if is_patched(original):
        return

    @marked
    @functools.wraps(original)
    def cmd(args: argparse.Namespace) -> None:
        try:
            original(args)
        except PrunerConfigError as error:
            sys.exit(f"error: {error}")

    ServeSubcommand.cmd = staticmethod(cmd)
