"""No budget: every layer keeps every token it ran (a selection still drops the deeper layers' others)."""

from __future__ import annotations

from asl_vllm.engine.budget_rules.base import BudgetRule


class NoBudget(BudgetRule):
    """The base rule's hooks: nothing to score, nothing to keep."""
