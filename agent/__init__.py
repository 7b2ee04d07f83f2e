"""``ownllm-agent``: runs on a GPU box, connects out to NATS, serves models through a backend
(ExLlamaV3, ExLlamaV2, transformers on CPU, echo). It imports nothing of the platform: the proxy
and the agent share only ``agent/protocol.py``, which evolves by adding optional fields.
"""
