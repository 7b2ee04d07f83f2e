"""The worker's slots: at most ``capacity`` jobs run at once, and the capacity may change while jobs run.

An upstream server reports its own capacity (llama.cpp's slots, SGLang's running requests) when it
answers, which may be after the agent started and may change when it restarts. A smaller capacity
stops nothing that runs: new jobs wait until fewer than the new capacity run. Waiters are served
first come, first served.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """An asyncio semaphore whose size can change."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Wait for a slot; a cancelled wait holds none."""
        if self.used < self.capacity and not self._waiters:
            self.used += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted just as the wait was cancelled: give it back
                self.release()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back; the next waiter gets it if the capacity allows."""
        self.used -= 1
        self._grant()

    def resize(self, capacity: int) -> None:
        """Run at most ``capacity`` (at least 1) from now on; waiters start at once if it grew."""
        self.capacity = max(1, capacity)
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self.used < self.capacity:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.used += 1
                waiter.set_result(None)
