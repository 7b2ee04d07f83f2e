"""Token prices: per model, per million tokens, in integer micro-cents; changed only with notice.

The terms: "token prices per model change at any moment with notice, taking effect on the date the
notice gives". Prices are integers (micro-cents per million tokens: $0.50 per million tokens is
50,000,000), never floats. A tenant's billing mode says whether its usage debits prepaid credits:
OwnLLM plans (the tenant runs the model on its own GPU) do not; API-credit products do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

MICRO_PER_CENT = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per million tokens
PRICE_NOTICE = timedelta(days=30)  # the default notice period; a deployment may set its own
MAX_PRICE = 10**15  # micro-cents per million tokens ($10 million per million tokens): a sanity ceiling

PLAN_MODE = "plan"  # usage is covered by the plan: no credits debited
CREDITS_MODE = "credits"  # every request's tokens are debited from prepaid credits
BILLING_MODES = frozenset({PLAN_MODE, CREDITS_MODE})
DEFAULT_BILLING_MODE = PLAN_MODE  # every OwnLLM tenant runs on its own GPU


def debits_credits(mode: str) -> bool:
    """Whether usage under this billing mode is paid from prepaid credits."""
    return mode == CREDITS_MODE


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Micro-cents per million input (prompt) and output (completion) tokens."""

    input_per_million: int
    output_per_million: int


def check_price(value: int) -> bool:
    """A price is a non-negative integer below the sanity ceiling (bool and float are not integers here)."""
    return type(value) is int and 0 <= value <= MAX_PRICE


def cost_micro(price: ModelPrice, prompt_tokens: int, completion_tokens: int) -> int:
    """The cost of one request in micro-cents, rounded UP to the next whole micro-cent.

    Exact integer arithmetic: (prompt x input + completion x output) / 1,000,000, ceiling. Rounding
    up costs a request at most one micro-cent (a hundred-millionth of a dollar) and never lets a
    request be free by rounding.
    """
    numerator = prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million
    return -(-numerator // TOKENS_PER_PRICE_UNIT)


def max_cost_micro(price: ModelPrice, prompt_tokens: int, max_completion_tokens: int) -> int:
    """The most a request can cost: its prompt plus the completion tokens it may generate."""
    return cost_micro(price, prompt_tokens, max_completion_tokens)


def cents_floor(micro: int) -> int:
    """Whole cents of a micro-cent amount (what a balance shows; the rest stays in the ledger)."""
    return micro // MICRO_PER_CENT
