"""Run one real agent worker with the echo backend in its own process (so a test can SIGKILL it).

argv[1] is a JSON object: WorkerConfig fields plus ``models``, ``capacity`` and ``token_delay_s``.
Prints ``ready`` once subscribed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from agent.backends.echo import EchoBackend
from agent.worker import Worker, WorkerConfig


async def main(options: dict[str, object]) -> None:
    """Start the worker and serve until killed."""
    backend = EchoBackend(
        model_ids=tuple(options.pop("models")),  # type: ignore[arg-type]
        capacity=int(options.pop("capacity", 4)),  # type: ignore[call-overload]
        token_delay_s=float(options.pop("token_delay_s", 0.0)),  # type: ignore[arg-type]
        context_length=int(options.pop("context_length", 2048)),  # type: ignore[call-overload]
    )
    backend.load()
    worker = Worker(backend, WorkerConfig(**options))  # type: ignore[arg-type]
    await worker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
