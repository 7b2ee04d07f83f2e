"""The proxy's usage writer wired to the domain: batches of records, one transaction per batch."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from api.proxy.usage import UsageWriter, is_tally
from api.proxy.usage_spool import Spool
from api.settings import Settings
from domain.application import OwnLLM
from domain.errors import InvalidValue

log = logging.getLogger(__name__)

SPOOL_DIR = "usage-spool"


def usage_writer(settings: Settings, app: OwnLLM) -> UsageWriter:
    """The writer the gateway meters into: batches to the event store, a spool under ``var_dir``."""
    return UsageWriter(
        batch_sink(app),
        spool=Spool(Path(settings.var_dir) / SPOOL_DIR),
        bound=settings.usage_buffer_bound,
        batch_size=settings.usage_batch_size,
        tally_interval_s=settings.usage_tally_interval_s,
    )


def batch_sink(app: OwnLLM) -> Any:
    """Usage records in one transaction (``record_usage_batch``), each rejection tally in its own.

    A record the domain refuses as invalid (it can never be stored: an unknown status, a spool line
    missing a field) would block every batch behind it; the batch is then written record by record
    and the invalid one is logged by request id and left out.
    """

    def write(records: list[dict[str, Any]]) -> None:
        usage = [_with_agent(r) for r in records if not is_tally(r)]
        if usage:
            try:
                app.record_usage_batch(usage)
            except (InvalidValue, TypeError, ValueError):
                _one_by_one(app, usage)
        for tally in (r for r in records if is_tally(r)):
            _record_tally(app, tally)

    return write


def _record_tally(app: OwnLLM, tally: dict[str, Any]) -> None:
    try:
        app.record_rejections(
            tally_id=tally["tally_id"],
            tenant_id=UUID(str(tally["tenant_id"])),
            since=datetime.fromisoformat(tally["since"]),
            until=datetime.fromisoformat(tally["until"]),
            counts=tally["counts"],
        )
    except (InvalidValue, KeyError, TypeError, ValueError) as exc:
        log.error("rejection tally %s can never be stored (%s): left out", tally.get("tally_id"), exc)


def _one_by_one(app: OwnLLM, usage: list[dict[str, Any]]) -> None:
    for record in usage:
        try:
            app.record_usage_batch([record])
        except (InvalidValue, TypeError, ValueError) as exc:
            log.error("usage record %s can never be stored (%s): left out", record.get("request_id"), exc)


def _with_agent(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "agent_id": agent_uuid(record.get("agent_id"))}


def agent_uuid(agent_id: str | UUID | None) -> UUID | None:
    """The agent's uuid, or None for a missing or malformed one (logged: an agent is misbehaving)."""
    if not agent_id:
        return None
    try:
        return UUID(str(agent_id))
    except ValueError:
        log.warning("usage recorded without the agent: it answered with a malformed id")
        return None
