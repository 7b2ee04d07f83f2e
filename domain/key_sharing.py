"""A tenant's choice of what a suspected shared key gets: its admins told (always), and the key suspended (opt-in)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.ids import NAMESPACE


class SharingPolicy(Aggregate):
    """One per tenant; absent means notify only."""

    class Chosen(Aggregate.Created):
        tenant_id: UUID
        suspend_shared_keys: bool
        actor: str
        request_id: str

    class Changed(Aggregate.Event):
        tenant_id: UUID
        suspend_shared_keys: bool
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, **_: Any) -> UUID:
        """The tenant's policy."""
        return uuid5(NAMESPACE, f"sharing-policy:{tenant_id}")

    @event(Chosen)
    def __init__(self, tenant_id: UUID, suspend_shared_keys: bool, actor: str, request_id: str) -> None:
        self.tenant_id = tenant_id
        self.suspend_shared_keys = suspend_shared_keys

    def change(self, ctx: Ctx, suspend_shared_keys: bool) -> None:
        """Choose again (no event when nothing changes)."""
        if suspend_shared_keys != self.suspend_shared_keys:
            self._changed(
                tenant_id=self.tenant_id, suspend_shared_keys=suspend_shared_keys, actor=ctx.actor,
                request_id=ctx.request_id,
            )  # fmt: skip

    @event(Changed)
    def _changed(self, tenant_id: UUID, suspend_shared_keys: bool, actor: str, request_id: str) -> None:
        self.suspend_shared_keys = suspend_shared_keys
