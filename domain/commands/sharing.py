"""Key sharing (terms §3): what the detector reports, the tenant's chosen response, and reinstating a key."""

from __future__ import annotations

from uuid import UUID

from domain.api_key import ApiKey
from domain.commands.base import check_reason
from domain.commands.features import FeatureCommands
from domain.context import SYSTEM, Ctx
from domain.errors import InvalidState, PermissionDenied
from domain.key_sharing import SharingPolicy

SUSPENSION_FEATURE = "key-sharing-suspension"


class SharingCommands(FeatureCommands):
    """Suspicions are recorded by the system; the tenant's admins choose whether they suspend the key."""

    def report_key_sharing(
        self, key_id: UUID, network_count: int, user_agent_count: int, window_s: int, request_id: str
    ) -> bool:
        """Record a suspected shared key; returns whether it was suspended (the tenant's policy decides)."""
        key = self._get(key_id)
        if not isinstance(key, ApiKey):
            return False
        policy = self._get(SharingPolicy.create_id(key.tenant_id))
        suspend = (
            isinstance(policy, SharingPolicy)
            and policy.suspend_shared_keys
            and self.feature_on(key.tenant_id, SUSPENSION_FEATURE)  # opting out of the beta stops it
        )
        ctx = Ctx(actor=SYSTEM, tenant_id=key.tenant_id, request_id=request_id)
        key.suspect_sharing(ctx, network_count, user_agent_count, window_s, suspend)
        self._save(key)
        return suspend

    def set_key_sharing_policy(self, ctx: Ctx, suspend_shared_keys: bool) -> None:
        """Admins choose: suspected shared keys are suspended (a beta feature to opt in to first), or only reported."""
        self._tenant(ctx.tenant_id).check_active()
        if suspend_shared_keys and not self.feature_on(ctx.tenant_id, SUSPENSION_FEATURE):
            raise InvalidState(
                f"turn on the beta feature {SUSPENSION_FEATURE} first (PUT /api/v1/features/{SUSPENSION_FEATURE})"
            )
        policy = self._get(SharingPolicy.create_id(ctx.tenant_id))
        if isinstance(policy, SharingPolicy):
            policy.change(ctx, suspend_shared_keys)
        else:
            policy = SharingPolicy(
                tenant_id=ctx.tenant_id, suspend_shared_keys=suspend_shared_keys, actor=ctx.actor,
                request_id=ctx.request_id,
            )  # fmt: skip
        self._save(policy)

    def reinstate_api_key(self, ctx: Ctx, key_id: UUID, reason: str) -> None:
        """An admin lets a key suspended as suspected shared work again (an operator's suspension is appealed)."""
        key = self._load(ApiKey, key_id, ctx.tenant_id)
        if key.suspended and key.suspension_id is not None:
            raise PermissionDenied("the operator suspended this key: file an appeal (POST /api/v1/appeals)")
        key.reinstate(ctx, check_reason(reason))
        self._save(key)
