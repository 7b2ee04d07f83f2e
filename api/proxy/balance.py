"""The prepaid-credit admission check: refuse a request its tenant's credits cannot cover, from memory.

Where: right after the body is read (the model and ``max_tokens`` are needed), next to the rate
limit (``gateway._start``). A tenant whose billing mode does not debit credits, or a model without
a price, costs one dict lookup. Otherwise the request's maximum cost is reserved:

    reserve = cost(price in force now, prompt upper bound, max_tokens)
    prompt upper bound = min(model context, UTF-8 bytes of the prompt + 16 per message + 16)

(a token decodes to at least one byte; 16 tokens per message cover chat templates' role markers).
It is admitted when ``balance - reserved - pending >= reserve``, where, in THIS process:

- ``balance`` is the in-memory credit read model (``projections/credit_balances.py``), fed by the
  ledger's events at every projection poll (0.1 s) - no database round trip per request;
- ``reserved`` is the sum of the reserves of this process's requests in flight for the tenant;
- ``pending`` is the actual cost of this process's finished requests that the read model has not
  yet seen debited (dropped when their ``Debited`` arrives, or after ``PENDING_TTL_S``).

So one process never admits more than the tenant can pay, whatever its concurrency. What it cannot
see is the other processes' reserved and pending amounts. The overdraw bound, precisely: with N
API processes, the ledger's shortfall for a tenant is at most the sum, over the OTHER N-1
processes, of the costs of the requests they admitted that this process's read model had not yet
seen debited - their requests in flight plus those finished within the debit lag (usage writer
flush + reaction + one poll, about 0.5 s). For a burst of concurrent requests on a nearly empty
balance B, each process admits at most B worth (its own reservations never exceed B), so the
ledger is overdrawn by at most (N - 1) x B, and by at most one request's maximum cost per process
per concurrent request (an agent reporting more tokens than the reserve allowed adds its excess).
The debit itself never fails on an empty balance: what no lot covers is recorded as
``shortfall_micro`` on the ``Debited`` event, so an overdraw is visible, never silent.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from api.proxy.errors import OpenAIError
from api.proxy.limits import Grant
from api.proxy.registry import TOKEN_COUNT_CEILING
from api.proxy.translate import Generation
from api.proxy.usage import Meter
from policies.prices import ModelPrice, cost_micro
from projections.credit_balances import CreditBalances

PENDING_TTL_S = 300.0  # a finished request whose debit never shows up stops counting after this
TOKENS_PER_MESSAGE = 16
_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details: your organization's "
    "prepaid credits do not cover this request."
)


def insufficient_quota() -> OpenAIError:
    """OpenAI's answer when the credits are spent: 429 ``insufficient_quota``."""
    return OpenAIError(429, "insufficient_quota", _QUOTA, code="insufficient_quota")


def prompt_upper_bound(generation: Generation, max_count: int) -> int:
    """At most one token per byte of prompt text, plus the template's tokens; never above the context."""
    text_bytes = sum(len(m.content.encode()) for m in generation.messages) + len((generation.prompt or "").encode())
    return min(max_count, text_bytes + TOKENS_PER_MESSAGE * (len(generation.messages) + 1))


@dataclass
class _Local:
    """This process's view of one tenant's money in motion."""

    reserved: int = 0
    pending: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)  # id -> (cost, drop after)
    pending_total: int = 0


class CreditGate:
    """Admits or refuses by the tenant's credits; see the module for the bound across processes."""

    def __init__(
        self,
        balances: CreditBalances,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.balances = balances
        self.now = now
        self.monotonic = monotonic
        self._local: dict[UUID, _Local] = {}
        self._lock = threading.Lock()

    def hold(
        self, grant: Grant, tenant_id: UUID, generation: Generation, meter: Meter, context_length: int | None
    ) -> Grant:
        """The grant, holding the request's reserve too; raises 429 ``insufficient_quota`` when not covered."""
        credit = self.balances.debiting(tenant_id)
        if credit is None:
            return grant
        now = self.now()
        price = self.balances.price_at(generation.model, now)
        if price is None:
            return grant  # an unpriced model costs nothing (the debit records nothing either)
        max_count = TOKEN_COUNT_CEILING if context_length is None else min(context_length, TOKEN_COUNT_CEILING)
        reserve = cost_micro(price, prompt_upper_bound(generation, max_count), generation.sampling.max_tokens)
        with self._lock, self.balances.lock:
            local = self._local.setdefault(tenant_id, _Local())
            pending = self._pending(local, credit.debited)
            if reserve > credit.balance(now) - local.reserved - pending:
                raise insufficient_quota()
            local.reserved += reserve
        return CreditHold(grant, self, tenant_id, reserve, price, meter)

    def settle(self, hold: CreditHold, prompt_tokens: int, completion_tokens: int) -> None:
        """The request ended: its reserve is freed and its actual cost is pending until debited."""
        cost = cost_micro(hold.price, prompt_tokens, completion_tokens)
        with self._lock:
            local = self._local[hold.tenant_id]
            local.reserved -= hold.reserve
            if cost > 0:
                local.pending[hold.meter.request_id] = (cost, self.monotonic() + PENDING_TTL_S)
                local.pending_total += cost

    def in_motion(self, tenant_id: UUID) -> tuple[int, int]:
        """This process's (reserved, pending) micro-cents for a tenant."""
        with self._lock, self.balances.lock:
            local = self._local.get(tenant_id) or _Local()
            credit = self.balances.tenants.get(tenant_id)
            return local.reserved, self._pending(local, credit.debited if credit else set())

    def _pending(self, local: _Local, debited: set[str]) -> int:
        """The pending total, first forgetting the oldest entries the ledger has debited or that outlived
        their TTL. Amortised O(1): debits arrive in about the order requests end, so the front clears; an
        entry debited behind an undebited one still counts until the front moves (refusing early, never late).
        """
        pending = local.pending
        if pending:
            now = self.monotonic()
            while pending:
                request_id, (cost, until) = next(iter(pending.items()))
                if request_id not in debited and until > now:
                    break
                del pending[request_id]
                local.pending_total -= cost
        return local.pending_total


class CreditHold(Grant):
    """A rate-limit grant that also holds a credit reserve; released exactly once (by the job run)."""

    __slots__ = ("gate", "inner", "meter", "price", "reserve", "tenant_id")

    def __init__(  # the inner grant keeps the limiter's state; Grant.__init__ is not called
        self, inner: Grant, gate: CreditGate, tenant_id: UUID, reserve: int, price: ModelPrice, meter: Meter
    ) -> None:
        self.inner = inner
        self.gate = gate
        self.tenant_id = tenant_id
        self.reserve = reserve
        self.price = price
        self.meter = meter
        self._released = False

    def release(self, tokens: int) -> None:
        """Free the rate-limit slot, then settle the reserve at the request's vouched counts."""
        if self._released:
            return
        self._released = True
        self.inner.release(tokens)
        self.gate.settle(self, self.meter.prompt_tokens, self.meter.completion_tokens)
