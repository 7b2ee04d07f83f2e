"""The retention sweep: billing contacts carried into the new fiscal year, and billing retention ended.

Given ``now``, it first seals every live tenant's billing contact under the fiscal year of ``now``
(``BillingAccount.ContactCarriedForward``), then, for every (tenant, fiscal year) whose retention is
over in the SELLER's jurisdiction (``policies/retention.py``), destroys that year's billing-contact
keys and records ``BillingRetention.Ended`` (uuid5 of tenant and year: a second pass at the same
``now`` records nothing). Every process drops those keys from its cache and redacts its copies on
that event (``projections/lifecycle.py`` ErasureFollower, ``projections/billing_view.py``).

For a TERMINATED tenant whose last fiscal year's activity retention is over in the TENANT's
jurisdiction, it records ``ActivityRetention.Ended`` (once per tenant); the audit log and the usage
view delete that tenant's rows on that event (and again on a rebuild, so they never come back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from api.services import Services
from domain.errors import DomainError

log = logging.getLogger(__name__)


@dataclass
class BillingRetentionDue:
    """Carry live contacts forward, then end every billing retention that is over."""

    services: Services
    catch_up: Callable[[], object]
    name: str = "billing-retention"

    def run(self, now: datetime) -> int:
        """The events recorded: contacts carried forward and retentions ended."""
        app, view, emitted = self.services.app, self.services.retention, 0
        for tenant_id in view.contacts_to_carry(now):
            try:
                emitted += int(self.services.command(app.carry_billing_contact, tenant_id, now))
            except DomainError as exc:  # an unreadable contact: the tenant must set its billing details again
                log.warning("billing contact of tenant %s not carried forward: %s", tenant_id, exc)
        if emitted:
            self.catch_up()  # the keys in force moved: the view must know before any key is destroyed
        for due in view.billing_due(app.seller_jurisdiction, now):
            try:
                ended = self.services.command(app.end_billing_retention, due.tenant_id, due.fiscal_year,
                                              due.subject_ids, now)  # fmt: skip
            except DomainError as exc:
                log.warning("billing retention of tenant %s, %s not ended: %s", due.tenant_id, due.fiscal_year, exc)
                continue
            emitted += int(ended)
        return emitted


@dataclass
class ActivityRetentionDue:
    """End the activity retention of every terminated tenant whose last fiscal year's retention is over."""

    services: Services
    name: str = "activity-retention"

    def run(self, now: datetime) -> int:
        """One ``ActivityRetention.Ended`` per tenant that became due."""
        app, emitted = self.services.app, 0
        for tenant_id, year in self.services.retention.activity_due(app.default_jurisdiction, now):
            try:
                emitted += int(self.services.command(app.end_activity_retention, tenant_id, year, now))
            except DomainError as exc:
                log.warning("activity retention of tenant %s not ended: %s", tenant_id, exc)
        return emitted
