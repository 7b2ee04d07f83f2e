"""Model licences: an admin accepts, for the tenant, the licence that governs a model before it is served."""

from __future__ import annotations

from dataclasses import dataclass

from domain.commands.base import Commands
from domain.context import Ctx
from domain.errors import Conflict, InvalidValue, NotFound
from domain.model_licence import UNLISTED_PREFIX, ModelLicence
from legal import catalogue

MAX_MODEL_ID = 256  # what an agent may announce (api/proxy/intake.py)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What an acceptance recorded: the catalogue key and the licence's name (empty when unlisted)."""

    key: str
    licence: str
    url: str


def licence_key_for(model_id: str) -> str:
    """The key an acceptance of ``model_id`` is recorded under: its catalogue entry's, or an unlisted one."""
    entry = catalogue.bundled().lookup(model_id)
    return entry.key if entry is not None else UNLISTED_PREFIX + catalogue.model_segment(model_id)


class LicenceCommands(Commands):
    """Accept and withdraw model licences for a tenant."""

    def accept_model_licence(
        self, ctx: Ctx, *, model: str = "", key: str = "", acknowledge_unlisted: bool = False
    ) -> Acceptance:
        """Accept the licence governing ``model`` (or the catalogue entry ``key``) for the tenant.

        A model the catalogue does not know needs ``acknowledge_unlisted``: the admin states that the
        tenant has checked that model's licence itself.
        """
        self._tenant(ctx.tenant_id).check_active()
        accepted = _resolve(model, key, acknowledge_unlisted)
        existing = self._get(ModelLicence.create_id(ctx.tenant_id, accepted.key))
        if isinstance(existing, ModelLicence):
            existing.accept_again(ctx, accepted.licence, accepted.url)
            self._save(existing)
            return accepted
        record = ModelLicence(
            tenant_id=ctx.tenant_id,
            key=accepted.key,
            licence=accepted.licence,
            url=accepted.url,
            actor=ctx.actor,
            request_id=ctx.request_id,
        )
        self._save(record, conflict=Conflict("the licence is already accepted"))
        return accepted

    def withdraw_model_licence(self, ctx: Ctx, key: str) -> None:
        """Withdraw an accepted licence: its models are refused from the next request on."""
        self._tenant(ctx.tenant_id).check_active()
        record = self._get(ModelLicence.create_id(ctx.tenant_id, key))
        if not isinstance(record, ModelLicence) or record.tenant_id != ctx.tenant_id:
            raise NotFound("licence acceptance not found")
        record.withdraw(ctx)
        self._save(record)


def _resolve(model: str, key: str, acknowledge_unlisted: bool) -> Acceptance:
    """The catalogue entry named by ``key`` or governing ``model``; an unlisted model only when acknowledged."""
    if bool(model) == bool(key):
        raise InvalidValue("give exactly one of model or key", "model")
    if key:
        entry = catalogue.bundled().by_key(key)
        if entry is None:
            raise NotFound(f"no licence {key!r} in the catalogue")
        return Acceptance(entry.key, entry.licence, entry.url)
    if len(model) > MAX_MODEL_ID or not model.strip():
        raise InvalidValue(f"model must be 1-{MAX_MODEL_ID} characters", "model")
    entry = catalogue.bundled().lookup(model)
    if entry is not None:
        return Acceptance(entry.key, entry.licence, entry.url)
    if not acknowledge_unlisted:
        raise InvalidValue(
            f"the model {model!r} is not in the licence catalogue: check its licence yourself and accept "
            "with acknowledge_unlisted=true",
            "acknowledge_unlisted",
        )
    return Acceptance(UNLISTED_PREFIX + catalogue.model_segment(model), "", "")
