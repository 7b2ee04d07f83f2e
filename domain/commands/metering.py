"""Metering: one usage record per inference request, counts only."""

from __future__ import annotations

import contextlib
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.commands.base import Commands
from domain.errors import InvalidValue
from domain.ids import secret_id_for
from domain.usage import USAGE_STATUSES, UsageRecord


def uuid_for_request(request_id: str) -> UUID:
    """The usage record id of a request."""
    return secret_id_for("usage", request_id)


class MeteringCommands(Commands):
    """What inference cost, recorded whatever way the request ended."""

    def record_usage(
        self,
        *,
        tenant_id: UUID,
        user_id: UUID,
        key_id: UUID,
        agent_id: UUID | str | None,
        model: str,
        endpoint: str,
        stream: bool,
        status: str,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_ms: int | None,
        duration_ms: int,
        request_id: str,
        counts_corrected: bool = False,
    ) -> UUID:
        """Record how one inference request ended (counts only); idempotent per request id."""
        if status not in USAGE_STATUSES:
            raise InvalidValue(f"unknown usage status {status!r}", "status")
        record = UsageRecord(
            id=uuid_for_request(request_id),
            tenant_id=tenant_id,
            user_id=user_id,
            key_id=key_id,
            agent_id=UUID(str(agent_id)) if agent_id else None,
            model=model,
            endpoint=endpoint,
            stream=stream,
            status=status,
            prompt_tokens=int(prompt_tokens),
            completion_tokens=int(completion_tokens),
            ttft_ms=None if ttft_ms is None else int(ttft_ms),
            duration_ms=int(duration_ms),
            actor=f"key:{key_id}",
            request_id=request_id,
            counts_corrected=bool(counts_corrected),
        )
        with contextlib.suppress(IntegrityError):  # already recorded for this request id: exactly one
            self._save_now(record)
        return record.id
