"""What the directory keeps of a tenant's agreements and standing: accepted model licences, answers to the
terms and their publications, opt-in features, the billed plan, keys suspected of being shared, and the
tenant's jurisdiction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.api_key import ApiKey
from domain.features import FeatureOptIn
from domain.model_licence import ModelLicence
from domain.subscription import Subscription
from domain.tenant import Tenant
from domain.terms import Publication, TermsAnswer

# The directory (projections/directory.py), which imports these handlers: named, not imported, to keep
# the import graph free of circles.
Directory = Any


def _licence_accepted(d: Directory, e: ModelLicence.Accepted | ModelLicence.Reaccepted) -> None:
    rows = d._add(e.tenant_id)
    key = e.key if isinstance(e, ModelLicence.Accepted) else d.licence_keys[e.originator_id]
    d.licence_keys[e.originator_id] = key
    rows.licences = rows.licences | {key}


def _licence_withdrawn(d: Directory, e: ModelLicence.Withdrawn) -> None:
    rows = d._add(e.tenant_id)
    rows.licences = rows.licences - {d.licence_keys[e.originator_id]}


def _key_sharing_suspected(d: Directory, e: ApiKey.SharingSuspected) -> None:
    key = d.keys[e.originator_id]
    key.sharing_suspected_at = e.timestamp
    key.suspended = key.suspended or e.suspended


def _feature_on(d: Directory, e: FeatureOptIn.OptedIn | FeatureOptIn.OptedInAgain) -> None:
    name = e.feature if isinstance(e, FeatureOptIn.OptedIn) else d.feature_names[e.originator_id]
    d.feature_names[e.originator_id] = name
    rows = d._add(e.tenant_id)
    rows.features = rows.features | {name}


def _feature_off(d: Directory, e: FeatureOptIn.OptedOut) -> None:
    rows = d._add(e.tenant_id)
    rows.features = rows.features - {d.feature_names[e.originator_id]}


def _published(d: Directory, e: Publication.Published) -> None:
    d.publications[f"{e.document}-{e.version}"] = e.published_at


def _terms_rejected(d: Directory, e: TermsAnswer.Rejected) -> None:
    tenant = d.tenants.get(e.tenant_id)
    if e.document == "terms" and tenant is not None:
        tenant.terms_rejected = e.version


def _terms_accepted(d: Directory, e: TermsAnswer.Accepted) -> None:
    tenant = d.tenants.get(e.tenant_id)
    if e.document == "terms" and tenant is not None and e.version > tenant.terms_version:
        tenant.terms_version = e.version


def _plan_set(d: Directory, e: Any) -> None:
    """The subscription's plan drives the tenant's limits (read by the proxy on its next request)."""
    tenant = d.tenants.get(e.tenant_id)
    if tenant is not None:
        tenant.plan = e.plan


def _plan_ended(d: Directory, e: Subscription.Ended) -> None:
    tenant = d.tenants.get(e.tenant_id)
    if tenant is not None:
        tenant.plan = ""  # back to the settings' default plan


def _jurisdiction_set(d: Directory, e: Tenant.JurisdictionSet) -> None:
    d.tenants[e.originator_id].jurisdiction = e.jurisdiction


AGREEMENT_HANDLERS: dict[type, Callable[[Directory, Any], None]] = {
    ModelLicence.Accepted: _licence_accepted,
    ModelLicence.Reaccepted: _licence_accepted,
    ModelLicence.Withdrawn: _licence_withdrawn,
    TermsAnswer.Accepted: _terms_accepted,
    ApiKey.SharingSuspected: _key_sharing_suspected,
    TermsAnswer.Rejected: _terms_rejected,
    Publication.Published: _published,
    FeatureOptIn.OptedIn: _feature_on,
    FeatureOptIn.OptedInAgain: _feature_on,
    FeatureOptIn.OptedOut: _feature_off,
    Subscription.Started: _plan_set,
    Subscription.Restarted: _plan_set,
    Subscription.Upgraded: _plan_set,
    Subscription.Renewed: _plan_set,
    Subscription.Ended: _plan_ended,
    Tenant.JurisdictionSet: _jurisdiction_set,
}
