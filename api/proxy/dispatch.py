"""Handing a job to one of the tenant's agents over NATS: the offer to the model's queue group, offered again
only while no agent can have started it, and the client-facing error when nobody serves the model."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from agent import protocol
from agent.protocol import Accepted, Error, Job
from api.proxy import errors
from api.proxy.channels import JobChannel
from api.proxy.errors import OpenAIError
from api.proxy.job_errors import agent_error
from api.proxy.limits import Grant
from api.proxy.registry import AgentRegistry
from api.proxy.reoffer import Offers, first_word_served, offered_elsewhere, refusal, retryable
from api.proxy.responses import Encoder
from api.proxy.run import JobRun
from api.proxy.translate import Generation
from api.proxy.transport import Transport
from api.proxy.usage import Meter

log = logging.getLogger(__name__)

_OFFER_ATTEMPTS = 4
_OFFER_BACKOFF_S = 0.05


class Dispatcher:
    """Sends accepted generations to agents; the gateway owns the checks before, the run owns the job after."""

    def __init__(
        self, transport: Transport, registry: AgentRegistry, instance_id: str, accept_timeout_s: float
    ) -> None:
        self.transport = transport
        self.registry = registry
        self.instance_id = instance_id
        self.accept_timeout_s = accept_timeout_s

    async def dispatch(
        self,
        generation: Generation,
        tenant_id: str,
        meter: Meter,
        grant: Grant,
        encoder: Encoder,
        context_length: int | None,
        receive: Any,
    ) -> JobRun:
        """Send the job as a NATS request, wait for an agent to accept it and for its first word.

        While the offer's answer or that first word is an agent's retryable refusal (``busy``: its queue
        is full or its upstream answered 429/503; ``model_not_loaded``), the job is offered to another
        agent (see :mod:`reoffer`).
        """
        transport = self.transport
        if not transport.connected:
            raise errors.no_agent("The inference service is reconnecting to its agents; retry shortly.")
        job = Job(
            job_id=meter.request_id,
            tenant_id=tenant_id,
            model=generation.model,
            kind=generation.kind,
            reply_to=protocol.reply_subject(tenant_id, self.instance_id, meter.request_id),
            sampling=generation.sampling,
            messages=generation.messages,
            prompt=generation.prompt,
            reply_as_agent=True,
        )
        offers = Offers()
        channel = await self._place(job, tenant_id, offers)
        run = JobRun(transport, channel, meter, grant, encoder, context_length, job.sampling.max_tokens)
        run.watch(receive)
        try:
            await first_word_served(self, run, job, meter.stream, offers)
        except BaseException:
            run.unwatch()
            raise
        return run

    async def _place(self, job: Job, tenant_id: str, offers: Offers) -> JobChannel:
        """Offer the job to the model's queue group (then by name, while agents refuse it as busy); the
        channel of the agent that accepted it."""
        transport = self.transport
        # Open before the offer (replies may beat the accept); replies past max_tokens end the job.
        channel = transport.open(job.job_id, tenant_id, job.sampling.max_tokens)
        try:
            answer = await self._offer(job, tenant_id)
        except NoRespondersError:
            transport.close_channel(job.job_id)
            raise self._nobody_serves(tenant_id, job.model) from None
        except (NatsTimeoutError, TimeoutError):
            transport.cancel(channel, lambda *_: None)  # a late accept must not leave the job running
            raise errors.agent_timeout("No agent accepted the request in time.") from None
        except (msgspec.DecodeError, msgspec.ValidationError):
            transport.close_channel(job.job_id)
            raise OpenAIError(502, "server_error", "The agent sent a malformed answer.", code="agent_error") from None
        except Exception as exc:  # connection dropped between the check and the send
            transport.close_channel(job.job_id)
            log.warning("job request failed: %s", type(exc).__name__)
            raise errors.no_agent("The inference service lost its connection to the agents; retry shortly.") from None
        if isinstance(answer, Accepted):
            channel.agent_id = channel.served_by or answer.agent_id  # a claim: watched, never recorded
            return channel
        transport.close_channel(job.job_id)
        if retryable(answer):  # the agent that got it has no room: another may
            assert isinstance(answer, Error)
            offers.refusals.append(answer)
            placed = await offered_elsewhere(self, job, offers)
            if placed is not None:
                return placed
            raise agent_error(refusal(offers.refusals))
        if isinstance(answer, Error):
            raise agent_error(answer)
        raise OpenAIError(502, "server_error", "The agent sent an unexpected answer.", code="agent_error")

    async def place_with(self, job: Job, tenant_id: str, agent_id: str) -> JobChannel | Error | None:
        """Offer the job to one agent by name: its channel if it accepted, its refusal, or ``None`` (no answer).

        An agent that does not answer in time is told to drop the job (a late accept must not leave it running).
        """
        transport = self.transport
        channel = transport.open(job.job_id, tenant_id, job.sampling.max_tokens)
        subject = protocol.direct_job_subject(tenant_id, job.model, agent_id)
        try:
            answer = protocol.decode(await transport.request(subject, protocol.encode(job), self.accept_timeout_s))
        except (NatsTimeoutError, TimeoutError, asyncio.CancelledError) as exc:
            transport.cancel(channel, lambda *_: None)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return None
        except Exception as exc:  # nobody by that name (an older agent, or gone), a malformed answer, the bus
            transport.close_channel(job.job_id)
            log.info("job %s not offered to agent %s: %s", job.job_id, agent_id, type(exc).__name__)
            return None
        if isinstance(answer, Accepted):
            channel.agent_id = channel.served_by or agent_id
            return channel
        transport.close_channel(job.job_id)
        return answer if isinstance(answer, Error) else None

    async def _offer(self, job: Job, tenant_id: str) -> protocol.Message:
        """Offer the job to the model's queue group, retrying the moments when agents come and go.

        A job is offered again only when no agent can have started it: nobody was subscribed
        (an agent just joined or left while heartbeats still list the model), or the agent
        that took the message was stopping and refused it.
        """
        subject = protocol.job_subject(tenant_id, job.model)
        payload = protocol.encode(job)
        deadline = time.monotonic() + self.accept_timeout_s
        for attempt in range(1, _OFFER_ATTEMPTS + 1):
            remaining = max(0.05, deadline - time.monotonic())
            try:
                answer = protocol.decode(await self.transport.request(subject, payload, timeout=remaining))
            except NoRespondersError:
                if attempt == _OFFER_ATTEMPTS or job.model not in self.registry.models(tenant_id):
                    raise
            else:
                if not (isinstance(answer, Error) and answer.code == "stopping") or attempt == _OFFER_ATTEMPTS:
                    return answer
            log.info("job %s offered again (attempt %d)", job.job_id, attempt + 1)
            await asyncio.sleep(_OFFER_BACKOFF_S * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _nobody_serves(self, tenant_id: str, model: str) -> OpenAIError:
        """404 when the tenant's live agents serve other models; 503 when none is there at all."""
        served = self.registry.models(tenant_id)
        if served and model not in served:
            return errors.model_not_found(model)
        return errors.no_agent(f"No agent of your organization is serving the model `{model}` right now.")
