"""Decoding a job offer: the :class:`Job`, or the :class:`Error` to answer (a bad message, another version)."""

from __future__ import annotations

import msgspec

from agent import protocol
from agent.protocol import Error, Job


def parse_job(data: bytes) -> Job | Error:
    """Decode a job request, or the :class:`Error` to answer (bad message or unknown version)."""
    try:
        message = protocol.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _undecodable(data, exc)
    if not isinstance(message, Job):
        return Error(job_id="", code="bad_request", message=f"expected a job, got {type(message).__name__}")
    if message.v != protocol.PROTOCOL_VERSION:
        return _version_error(message.job_id, message.v)
    return message


def _version_error(job_id: str, version: object) -> Error:
    """The answer to a job in a protocol version this agent does not speak."""
    return Error(
        job_id=job_id,
        code="unsupported_version",
        message=f"protocol version {version!r} is not supported (this agent: {protocol.PROTOCOL_VERSION})",
    )


def _undecodable(data: bytes, exc: Exception) -> Error:
    """Classify a message that does not decode: a newer version, or malformed."""
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        raw = None
    job_id = raw.get("job_id") if isinstance(raw, dict) else None
    job_id = job_id if isinstance(job_id, str) else ""
    if isinstance(raw, dict) and raw.get("v", protocol.PROTOCOL_VERSION) != protocol.PROTOCOL_VERSION:
        return _version_error(job_id, raw.get("v"))
    return Error(job_id=job_id, code="bad_request", message=f"malformed job message ({type(exc).__name__})")
