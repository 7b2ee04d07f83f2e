"""The worker's slots (agent/slots.py) as a property: never more grants than the capacity of the moment,
first come first served, no waiter left waiting while a slot is free, a cancelled wait holds nothing."""

from __future__ import annotations

import asyncio

from hypothesis import example, given
from hypothesis import strategies as st

from agent.slots import Slots

ops = st.lists(
    st.one_of(
        st.just(("acquire", 0)),
        st.tuples(st.just("release"), st.integers(0, 7)),  # the n-th holder (mod how many) lets go
        st.tuples(st.just("resize"), st.integers(-1, 5)),
        st.tuples(st.just("cancel"), st.integers(0, 7)),  # the n-th waiter (mod how many) gives up
        st.tuples(st.just("handover"), st.integers(0, 7)),  # a release, and the waiter it woke gives up at once
    ),
    max_size=40,
)


@given(st.integers(1, 4), ops)
@example(1, [("acquire", 0), ("acquire", 0), ("handover", 0)])  # granted, then cancelled before it ran
def test_slots_grant_in_order_within_the_capacity_and_never_strand_a_waiter(start: int, steps: list) -> None:
    asyncio.run(_play(start, steps))


async def _play(start: int, steps: list[tuple[str, int]]) -> None:
    slots = Slots(start)
    order: list[int] = []  # ticket numbers, in the order their slot was granted
    waiting: dict[int, asyncio.Task[None]] = {}
    holders: list[int] = []
    over: list[tuple[int, int]] = []

    async def take(ticket: int) -> None:
        await slots.acquire()
        if slots.used > slots.capacity:
            over.append((slots.used, slots.capacity))
        order.append(ticket)
        holders.append(ticket)

    for ticket, (op, n) in enumerate(steps):
        if op == "acquire":
            waiting[ticket] = asyncio.create_task(take(ticket))
        elif op == "release" and holders:
            holders.pop(n % len(holders))
            slots.release()
        elif op == "resize":
            slots.resize(n)
        elif op == "cancel" and (queued := [t for t in waiting if t not in holders]):
            waiting.pop(queued[n % len(queued)]).cancel()
        elif op == "handover" and holders and (queued := [t for t in waiting if t not in holders]):
            holders.pop(n % len(holders))
            slots.release()  # grants the oldest waiter its slot; it has not run yet when it is cancelled
            waiting.pop(queued[0]).cancel()
        for _ in range(3):
            await asyncio.sleep(0)
        for t in [t for t, task in waiting.items() if task.done()]:
            del waiting[t]
        assert over == []  # a grant never took the count past the capacity of that moment
        assert slots.used == len(holders)  # a cancelled wait holds nothing
        assert not (waiting and slots.used < slots.capacity)  # nobody waits while a slot is free
    assert order == sorted(order)  # first come, first served
    for task in waiting.values():
        task.cancel()
