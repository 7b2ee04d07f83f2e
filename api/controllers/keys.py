"""Personal API keys: users issue and revoke their own; admins may for anyone in the tenant."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from api import schemas
from api.dependencies import CommandService
from api.guards import AnyRequest
from api.pagination import DEFAULT_LIMIT, After, Limit, listing, paginate
from api.principal import Principal
from api.views import key_out
from domain.application import OwnLLM
from domain.authorization import KEY_LISTING, whose_rows
from domain.context import Ctx
from domain.permissions import Action
from projections.directory import Directory


class KeyController(Controller):
    """The secret is shown once at issue; listings show the visible prefix only."""

    path = "/api/v1/keys"
    tags = ["api-keys"]

    @listing("listKeys", Action.KEYS_READ_OWN)
    def list_keys(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        directory: NamedDependency[Directory],
        now: NamedDependency[datetime],
        all_users: FromQuery[bool] = False,
        issued_by: FromQuery[UUID | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        after: After = None,
    ) -> Response[list[schemas.KeyOut]]:
        """The caller's keys, oldest first; ``?all_users=true`` lists the tenant's (admin, compliance, auditor).

        ``?issued_by=USER_ID`` keeps the keys that user minted: with ``all_users=true``, what an admin
        issued for others, to review when they leave (their removal answers with a link to it).
        """
        owner = whose_rows(principal.caller, KEY_LISTING, all_users=all_users)
        rows = directory.tenant_keys(principal.tenant_id, owner)
        if issued_by is not None:
            rows = [k for k in rows if k.issued_by == issued_by]
        return paginate(request, rows, partial(key_out, now=now), limit, after)

    @post("/", operation_id="issueKey", opt={"action": Action.KEYS_OWN}, sync_to_thread=True)
    def issue(
        self,
        principal: NamedDependency[Principal],
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        directory: NamedDependency[Directory],
        data: JSONBody[schemas.IssueKeyRequest],
    ) -> schemas.IssuedKeyOut:
        """Issue a key for yourself (or, as admin, an inference-only one for ``user_id``); the secret is shown once.

        Every key records who issued it (``issued_by`` in listings).
        """
        owner = data.user_id or principal.user_id
        issued = commands.run(
            OwnLLM.issue_api_key,
            ctx,
            user_id=owner,
            name=data.name,
            scopes=list(data.scopes),
            expires_at=data.expires_at,
        )
        key = directory.keys[issued.id]
        return schemas.IssuedKeyOut(issued.id, owner, issued.secret, issued.prefix, sorted(key.scopes), key.expires_at)

    @delete("/{key_id:uuid}", operation_id="revokeKey", opt={"action": Action.KEYS_OWN}, sync_to_thread=True)
    def revoke(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        key_id: FromPath[UUID],
        reason: FromQuery[str] = "",
    ) -> None:
        """Revoke a key; it is refused from the next request on."""
        commands.run(OwnLLM.revoke_api_key, ctx, key_id, reason)

    @post(
        "/{key_id:uuid}/reinstate",
        operation_id="reinstateKey",
        opt={"action": Action.KEYS_MANAGE_ALL},
        sync_to_thread=True,
        status_code=204,
    )
    def reinstate(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        key_id: FromPath[UUID],
        reason: FromQuery[str] = "",
    ) -> None:
        """Let a key suspended as suspected shared work again (admins; the suspicion stays on record)."""
        commands.run(OwnLLM.reinstate_api_key, ctx, key_id, reason)


class KeySharingPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """Whether keys the detector suspects of being shared are suspended (true) or only reported (false)."""

    suspend_shared_keys: bool


class KeySharingController(Controller):
    """The tenant's response to suspected shared keys (terms §3)."""

    path = "/api/v1/tenant/key-sharing"
    tags = ["keys"]

    @put("/", operation_id="setKeySharingPolicy", opt={"action": Action.KEYS_MANAGE_ALL}, sync_to_thread=True)
    def set_policy(
        self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService], data: JSONBody[KeySharingPolicy]
    ) -> KeySharingPolicy:
        """Choose whether suspected shared keys are suspended at once or only reported to the admins."""
        commands.run(OwnLLM.set_key_sharing_policy, ctx, data.suspend_shared_keys)
        return data
