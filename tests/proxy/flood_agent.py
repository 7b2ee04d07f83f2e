"""A hostile agent in its own process, with a real agent's NATS credentials (issue 13).

argv[1] is a JSON object: ``nats_url``, ``user``, ``password``, ``tenant_id``, ``agent_id``, ``mode``
(``heartbeats`` or ``replies``) and ``seconds``. Prints ``ready`` once connected (and subscribed),
then floods for ``seconds`` and prints what it sent as JSON.

- ``heartbeats``: its own heartbeat subject, as fast as it can: valid beats, oversized beats,
  beats with thousands of models, garbage, and beats of protocol version 2.
- ``replies``: serves jobs of model ``flood``: accepts each, then floods it with chunks far past
  its ``max_tokens``; in between, replies for job ids that do not exist.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from uuid import uuid4

import nats

from agent import protocol
from agent.protocol import Accepted, Chunk, Heartbeat, Job, ModelInfo, flush_in_order


def heartbeats(tenant_id: str, agent_id: str) -> list[bytes]:
    """The mix of heartbeat payloads the flood cycles through."""

    def beat(models: int, v: int = protocol.PROTOCOL_VERSION) -> bytes:
        infos = tuple(ModelInfo(f"m{i}", "echo", licence="x" * 40) for i in range(models))
        return protocol.encode(Heartbeat(agent_id, tenant_id, infos, 4, 0, 0, 3600.0, v=v))

    # mostly a full, valid beat (128 models); then too many models within the size bound, just over
    # the bound, garbage, a newer version, deep nesting
    return [beat(128), beat(200), beat(1200), b"\xc1garbage", beat(1, v=2), b"\x91" * 50_000]


async def flood_heartbeats(nc: nats.NATS, options: dict[str, str], until: float) -> int:
    """Publish the heartbeat mix until ``until``; the number of messages sent."""
    subject = protocol.heartbeat_subject(options["tenant_id"], options["agent_id"])
    payloads = heartbeats(options["tenant_id"], options["agent_id"])
    sent = 0
    while time.monotonic() < until:
        for _ in range(200):
            await nc.publish(subject, payloads[0] if sent % 20 else payloads[(sent // 20) % len(payloads)])
            sent += 1
        await asyncio.sleep(0)
    return sent


async def serve_flooding(nc: nats.NATS, options: dict[str, str], until: float) -> list[int]:
    """Subscribe to jobs of model ``flood``, accept and flood each until ``until``; a live count of sends."""
    sent = [0]
    tenant_id, agent_id = options["tenant_id"], options["agent_id"]

    async def on_job(msg: nats.aio.msg.Msg) -> None:
        job = protocol.decode(msg.data)
        assert isinstance(job, Job)
        await msg.respond(protocol.encode(Accepted(job.job_id, agent_id)))
        own = protocol.agent_reply_subject(job.reply_to, agent_id)
        instance = job.reply_to.split(".")[3]
        seq = 0
        while time.monotonic() < until:
            for _ in range(100):
                await nc.publish(own, protocol.encode(Chunk(job.job_id, seq, " w", 1)))
                stray = protocol.reply_subject(tenant_id, instance, uuid4().hex)
                await nc.publish(stray, protocol.encode(Chunk("stray", seq, "x", 1)))
                seq += 1
                sent[0] += 2
            await asyncio.sleep(0)

    await nc.subscribe(protocol.job_subject(tenant_id, "flood"), queue=protocol.queue_group("flood"), cb=on_job)
    await flush_in_order(nc)
    return sent


async def announce(nc: nats.NATS, options: dict[str, str], until: float) -> None:
    """Heartbeats of a well-behaved agent serving ``flood`` (so the proxy lists the model)."""
    beat = Heartbeat(options["agent_id"], options["tenant_id"], (ModelInfo("flood", "echo"),), 4, 0, 0, 0.2)
    while time.monotonic() < until:
        await nc.publish(protocol.heartbeat_subject(options["tenant_id"], options["agent_id"]), protocol.encode(beat))
        await asyncio.sleep(0.2)


async def main(options: dict[str, str]) -> None:
    """Connect with the agent's credentials, say ready, flood."""
    for attempt in range(50):  # the server may still be reloading the authorization that adds us
        try:
            nc = await nats.connect(options["nats_url"], user=options["user"], password=options["password"])
            break
        except Exception:
            if attempt == 49:
                raise
            await asyncio.sleep(0.1)
    until = time.monotonic() + float(options["seconds"])
    if options["mode"] == "replies":
        counter = await serve_flooding(nc, options, until)
        print("ready", flush=True)
        await announce(nc, options, until)
        sent = counter[0]
    else:
        print("ready", flush=True)
        sent = await flood_heartbeats(nc, options, until)
    await nc.drain()
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
