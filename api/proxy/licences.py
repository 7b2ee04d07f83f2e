"""The licence gate: a model is served to a tenant only once an admin has accepted its licence (terms §9).

From memory, per request: the model id's catalogue key (cached) and one membership test against the
tenant's accepted keys, which the directory keeps current in every process as acceptances are recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from uuid import UUID

from api.proxy import errors
from api.proxy.schemas import LicenceInfo
from domain.commands.licences import licence_key_for
from domain.model_licence import UNLISTED_PREFIX
from legal.catalogue import Catalogue, ModelLicence

_CACHE_LIMIT = 4096  # model ids remembered; a flood of made-up ids only costs a lookup each past this
ACCEPT_PATH = "/api/v1/licences"
log = logging.getLogger(__name__)


class LicenceGate:
    """Refuses a model whose licence the tenant has not accepted; describes licences for the model list."""

    def __init__(self, catalogue: Catalogue, accepted: Callable[[UUID], frozenset[str]]) -> None:
        self.catalogue = catalogue
        self.accepted = accepted
        self._keys: dict[str, str] = {}

    def key_of(self, model: str) -> str:
        """The licence key governing ``model`` (an ``unlisted:`` key outside the catalogue)."""
        key = self._keys.get(model)
        if key is None:
            key = licence_key_for(model)
            if len(self._keys) < _CACHE_LIMIT:
                self._keys[model] = key
        return key

    def check(self, tenant_id: UUID, model: str, served: Callable[[], Mapping[str, object]]) -> None:
        """Return when the tenant accepted the model's licence; else 403 naming it (404 for a model nobody knows)."""
        key = self.key_of(model)
        if key in self.accepted(tenant_id):
            return
        if key.startswith(UNLISTED_PREFIX):
            if model not in served():
                raise errors.model_not_found(model)  # no catalogue entry and no agent: it does not exist
            raise errors.permission(
                f"The model `{model}` is not in OwnLLM's licence catalogue. An admin of your organization must "
                f"acknowledge its licence first: POST {ACCEPT_PATH} with "
                f'{{"model": "{model}", "acknowledge_unlisted": true}}.',
                code="model_licence_not_accepted",
            )
        entry = self.catalogue.by_key(key)
        assert entry is not None  # a catalogued key comes from this catalogue
        raise errors.permission(
            f"The model `{model}` is licensed under the {entry.licence} ({entry.url}). An admin of your "
            f'organization must accept it first: POST {ACCEPT_PATH} with {{"key": "{key}"}}.',
            code="model_licence_not_accepted",
        )

    def describe(self, tenant_id: UUID, model: str, announced: set[str]) -> LicenceInfo:
        """The model's licence, whether the tenant accepted it, and whether its agents' claims agree."""
        key = self.key_of(model)
        entry: ModelLicence | None = self.catalogue.by_key(key)
        agrees = entry is None or all(entry.announced_agrees(claim) for claim in announced)
        if not agrees:
            log.warning("agents announce licence %s for %s; the catalogue says %s", sorted(announced), model, key)
        return LicenceInfo(
            key=key,
            name=entry.licence if entry else "",
            url=entry.url if entry else "",
            accepted=key in self.accepted(tenant_id),
            catalogued=entry is not None,
            announced=sorted(announced),
            announced_agrees=agrees,
        )

    def knows(self, model: str) -> bool:
        """Whether the catalogue has an entry for ``model``."""
        return not self.key_of(model).startswith(UNLISTED_PREFIX)
