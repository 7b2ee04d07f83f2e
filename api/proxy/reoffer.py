"""A job refused after its accept, before any text, is offered to another agent of the model (issue 18).

A relay agent accepts a job and then learns that its upstream is full (HTTP 429/503): it answers
``Error(code="busy")`` before any chunk. While no text of the job exists, the proxy offers it again,
by name, to a live agent serving the model that this request has not tried (``ollm.T.job.M.A``;
the least loaded by its last heartbeat first),
at most :data:`MAX_AGENTS` agents in all. The agent that refused is known from the subject of its
reply, which NATS vouches for; one that does not name itself is not offered around (it could be
tried again). Only when no agent took the job does the client get the refusal: 429 with the
shortest ``Retry-After`` the agents gave. Each attempt has its own job id (``<request id>-<n>``), so
a refused attempt's stray replies never reach the next one; a refused attempt records no usage
(its agent generated nothing), so the request's one usage record is its last attempt's.

An agent whose queue is full answers the offer itself with ``busy`` (and one that just stopped
serving the model, ``model_not_loaded``): the job is then offered by name the same way, to any live
agent of the model (that answer names nobody NATS vouches for, so the refusing agent may be asked
again, within the same bound).

The wait for the first word happens before the response starts, so a stream refused everywhere is
still a real 429; a stream whose agent is silent for a keepalive interval starts (200) at the
keepalive, and is not offered again after that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from agent import protocol
from agent.protocol import Error, Job
from api.proxy.channels import JobChannel
from api.proxy.job_errors import agent_error
from api.proxy.registry import AgentRegistry
from api.proxy.run import JobRun
from api.proxy.transport import Transport


class Dispatcher(Protocol):
    """What a re-offer needs of :class:`api.proxy.dispatch.Dispatcher` (a protocol: no import circle)."""

    transport: Transport
    registry: AgentRegistry
    instance_id: str

    async def place_with(self, job: Job, tenant_id: str, agent_id: str) -> JobChannel | Error | None:
        """Offer the job to one agent by name."""
        ...


MAX_AGENTS = 3  # agents one request is offered to, the first included
RETRYABLE = frozenset({"busy", "model_not_loaded"})  # refusals that mean "nothing started, try elsewhere"


def retryable(item: object) -> bool:
    """An agent's refusal before any text of the job: another agent may take the job."""
    return type(item) is Error and item.code in RETRYABLE and item.seq == 0 and item.completion_tokens == 0


def untried(dispatcher: Dispatcher, tenant_id: str, model: str, tried: set[str]) -> list[str]:
    """Live agents serving ``model`` that this request has not tried, the least loaded at their last
    heartbeat first, in random order among equals (spreads the load)."""
    live = dispatcher.registry.live(tenant_id)
    agents = [a for a in live if a.agent_id not in tried and any(m.id == model for m in a.models)]
    random.shuffle(agents)
    agents.sort(key=lambda a: a.load)  # stable: the shuffle orders the equals
    return [a.agent_id for a in agents]


def refusal(errors: list[Error]) -> Error:
    """The refusal the client gets when no agent took the job: busy (the shortest wait) if any agent was."""
    busy = [e for e in errors if e.code == "busy"]
    if not busy:
        return errors[-1]
    waits = [e.retry_after_s for e in busy if e.retry_after_s is not None]
    return msgspec.structs.replace(busy[0], retry_after_s=min(waits) if waits else None)


@dataclass
class Offers:
    """One request's offers so far: the agents known to have had it, their refusals, the attempts made."""

    tried: set[str] = field(default_factory=set)
    refusals: list[Error] = field(default_factory=list)
    attempt: int = 1  # the first offer, to the model's queue group


async def offered_elsewhere(dispatcher: Dispatcher, job: Job, offers: Offers) -> JobChannel | None:
    """Offer the job by name to live agents of its model not tried yet, until one accepts or
    :data:`MAX_AGENTS` offers were made; the accepting agent's channel, else ``None``."""
    for agent_id in untried(dispatcher, job.tenant_id, job.model, offers.tried)[: MAX_AGENTS - offers.attempt]:
        offers.attempt += 1
        offers.tried.add(agent_id)
        job_id = f"{job.job_id}-{offers.attempt}"
        reply_to = protocol.reply_subject(job.tenant_id, dispatcher.instance_id, job_id)
        answer = await dispatcher.place_with(
            msgspec.structs.replace(job, job_id=job_id, reply_to=reply_to), job.tenant_id, agent_id
        )
        if isinstance(answer, Error):
            offers.refusals.append(answer)
        elif answer is not None:
            return answer
    return None


async def first_word_served(
    dispatcher: Dispatcher, run: JobRun, job: Job, stream: bool, offers: Offers | None = None
) -> None:
    """Wait for the run's first word, offering the job again while it is a retryable refusal.

    Raises the client-facing refusal when no agent took it; the run then never settles (no usage
    record: the gateway tallies the 429). A failure while waiting (cancellation) stops the job.
    ``offers``: what placing the job already tried (an agent whose queue was full at the offer).
    """
    offers = offers or Offers()
    try:
        while retryable(item := await run.first_word(stream)):
            assert isinstance(item, Error)
            offers.refusals.append(item)
            channel = run.channel
            dispatcher.transport.close_channel(channel.job_id)  # its refusal was its last word
            if channel.served_by is None:  # an agent that does not name itself could be offered the job again
                raise agent_error(refusal(offers.refusals))
            offers.tried.add(channel.served_by)
            placed = await offered_elsewhere(dispatcher, job, offers)
            if placed is None:
                raise agent_error(refusal(offers.refusals))
            run.channel = placed
    except BaseException:
        if not run.settled and run.channel.job_id in dispatcher.transport.channels:
            dispatcher.transport.cancel(run.channel, lambda *_: None)  # never leave the job running
        raise
