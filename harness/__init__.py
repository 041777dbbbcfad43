"""What the tests and the benchmarks both drive engines with: prompts, haystack text, engine probes.

Not part of the installed plugin; imported from a checkout, beside `tests/` and `benchmarks/`.
"""
