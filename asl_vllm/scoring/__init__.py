"""The scoring core shared by every pruner: torch reference, paged variants, dispatch."""
