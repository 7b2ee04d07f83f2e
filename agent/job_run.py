"""One accepted job's life on the agent: a slot, the backend's events relayed as Chunks, one Final or Error.

Every job ends with exactly one Final or Error (the proxy meters from it); logs carry ids and counts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.backends.base import Backend, Finished, GenerationRequest, RequestError, TextDelta
from agent.protocol import Chunk, Error, Final, Job
from agent.slots import Slots

log = logging.getLogger("ownllm.agent.job")

Publish = Callable[[Chunk | Final | Error], Awaitable[None]]


@dataclass
class JobState:
    """A job the worker accepted: waiting for a slot or running."""

    job: Job
    running: bool = False
    waiting: bool = False  # for a slot: a cancel wakes it
    cancelled: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


async def run_job(state: JobState, backend: Backend, slots: Slots, publish: Publish) -> None:
    """Wait for a slot, run the job, publish chunks and one Final or Error."""
    job = state.job
    request = GenerationRequest.from_job(job)
    progress = [0, 0]  # chunks sent, completion tokens sent
    try:
        state.waiting = True
        try:
            await slots.acquire()
        except asyncio.CancelledError:
            if not state.cancelled:
                raise
            await _cancelled_while_queued(backend, job, request, publish)  # woken by the cancel: no slot taken
            return
        finally:
            state.waiting = False
        try:
            if state.cancelled:  # cancelled before it even began to wait
                await _cancelled_while_queued(backend, job, request, publish)
                return
            state.running = True
            await _stream(backend, job, request, progress, publish)
        finally:
            slots.release()
    except RequestError as exc:
        log.info("job %s refused by the backend: %s", job.job_id, exc.code)
        error = Error(job.job_id, exc.code, str(exc), seq=progress[0], reason=exc.reason,
                      retry_after_s=exc.retry_after_s, completion_tokens=progress[1])  # fmt: skip
        with contextlib.suppress(Exception):
            await publish(error)
    except Exception as exc:
        log.error("job %s failed in the engine: %s", job.job_id, type(exc).__name__)
        error = Error(job.job_id, "internal", f"engine failed ({type(exc).__name__})", seq=progress[0],
                      completion_tokens=progress[1])  # fmt: skip
        with contextlib.suppress(Exception):
            await publish(error)


async def _cancelled_while_queued(backend: Backend, job: Job, request: GenerationRequest, publish: Publish) -> None:
    """The Final of a job cancelled before it ran: exact prompt count, counted off the event loop."""
    prompt = await asyncio.to_thread(backend.count_prompt_tokens, request)
    estimated = not getattr(backend, "exact_prompt_counts", True)  # the openai backend estimates
    await publish(Final(job.job_id, 0, "cancelled", prompt, 0, estimated=estimated))
    log.info("job %s cancelled while queued", job.job_id)


async def _stream(
    backend: Backend, job: Job, request: GenerationRequest, progress: list[int], publish: Publish
) -> None:
    """Relay the backend's events as Chunks and one Final."""
    events = backend.generate(request)
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, TextDelta):
                await publish(Chunk(job.job_id, progress[0], event.text, event.tokens))
                progress[0] += 1
                progress[1] += event.tokens
                continue
            assert isinstance(event, Finished)
            await publish(Final(job.job_id, progress[0], event.finish_reason, event.prompt_tokens,
                                event.completion_tokens, estimated=event.estimated))  # fmt: skip
            log.info("job %s finished: %s, prompt_tokens=%d completion_tokens=%d chunks=%d", job.job_id,
                     event.finish_reason, event.prompt_tokens, event.completion_tokens, progress[0])  # fmt: skip
            return
    raise RuntimeError("backend ended without a final event")
