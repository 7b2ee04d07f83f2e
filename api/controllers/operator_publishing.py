"""What the operator publishes with notice: a version of the terms, privacy policy or DPA (terms §18) and a
model's token prices (effective on the date the notice gives); and each tenant's billing mode. Operator tokens only."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from litestar import Controller, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api.dependencies import CommandService
from api.guards import AnyRequest
from api.operator_auth import operator_guard, operator_of
from domain.application import OwnLLM
from domain.context import Ctx

PLATFORM = UUID(int=0)  # publications and prices belong to no tenant


class PublishRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A version shipped in the legal documents folder, e.g. ``terms-2``."""

    ref: str


class PublishedOut(msgspec.Struct):
    """What was announced, and when it takes effect."""

    ref: str
    effective_at: datetime
    material: bool
    sha256: str


class PriceChange(msgspec.Struct, forbid_unknown_fields=True):
    """A model's new prices in integer micro-cents per million tokens ($0.50 = 50000000), from ``effective_at``."""

    model: str
    input_per_million: int
    output_per_million: int
    effective_at: datetime


class PriceChangeOut(msgspec.Struct):
    """The price book's version that holds the change, and the tenants given notice of it."""

    model: str
    effective_at: datetime
    version: int


class BillingModeIn(msgspec.Struct, forbid_unknown_fields=True):
    """``plan``: usage is covered by the tenant's plan; ``credits``: each request debits prepaid credits."""

    mode: str


class PublishingController(Controller):
    """Announcements that need notice; each is recorded with the operator as its actor."""

    path = "/api/v1/operator"
    tags = ["operator"]
    guards = [operator_guard]
    opt = {"operator": True}

    @post("/publications", operation_id="operatorPublish", sync_to_thread=True)
    def publish(
        self,
        request: AnyRequest,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        data: JSONBody[PublishRequest],
    ) -> PublishedOut:
        """Announce a legal document's version now; a material change needs 30 days' notice (terms §18)."""
        ctx = Ctx(operator_of(request).actor, PLATFORM, request_id)
        document = commands.run(OwnLLM.publish_document, ctx, data.ref)
        return PublishedOut(document.ref, document.effective_at, document.material, document.sha256)

    @post("/prices", operation_id="operatorSchedulePrice", sync_to_thread=True)
    def schedule_price(
        self,
        request: AnyRequest,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        data: JSONBody[PriceChange],
    ) -> PriceChangeOut:
        """Schedule a model's new token prices; ``effective_at`` must leave the notice (OWNLLM_PRICE_NOTICE_DAYS)."""
        version = commands.run(
            OwnLLM.schedule_price_change,
            data.model,
            data.input_per_million,
            data.output_per_million,
            data.effective_at,
            operator_of(request).actor,
            request_id,
        )
        return PriceChangeOut(data.model, data.effective_at, version)

    @put("/tenants/{tenant_id:uuid}/billing-mode", operation_id="operatorSetBillingMode", sync_to_thread=True)
    def set_billing_mode(
        self,
        request: AnyRequest,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        tenant_id: FromPath[UUID],
        data: JSONBody[BillingModeIn],
    ) -> BillingModeIn:
        """Whether the tenant's usage debits prepaid credits (the proxy refuses it at zero balance) or its plan's."""
        commands.run(OwnLLM.set_billing_mode, tenant_id, data.mode, operator_of(request).actor, request_id)
        return data
