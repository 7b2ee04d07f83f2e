"""The OwnLLM application: ONE event-sourced application whose commands come from context modules.

One application means one notification log (the audit chain's single order) and one mapper (the
sealing of personal data). Its commands live in ``domain/commands/`` by context and are composed
here; storage (recorders, subject-key stores) and credential hashing are adapters that the
composition root (``api/services.py``) passes in, so this package knows no SQL driver, HTTP or NATS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.persistence import Mapper, ProcessRecorder

from domain.commands.access import IssuedSecret, PairedAgent
from domain.commands.base import CredentialHasher, Directory, utc_now
from domain.commands.billing import BillingCommands
from domain.commands.compliance import ComplianceCommands
from domain.commands.credits import CreditCommands
from domain.commands.enforcement import EnforcementCommands
from domain.commands.licences import LicenceCommands
from domain.commands.lifecycle import LifecycleCommands
from domain.commands.metering import MeteringCommands, uuid_for_request
from domain.commands.retention import RetentionCommands
from domain.commands.sharing import SharingCommands
from domain.commands.tenancy import Joined, SignedUp, TenancyCommands
from domain.commands.terms import TermsCommands
from domain.credit_ledger import SNAPSHOT_EVERY, CreditLedger
from domain.sealing import KeyStore, SealingMapper

__all__ = [
    "CredentialHasher",
    "Directory",
    "IssuedSecret",
    "Joined",
    "OwnLLM",
    "PairedAgent",
    "SignedUp",
    "utc_now",
    "uuid_for_request",
]


class OwnLLM(
    TenancyCommands,
    MeteringCommands,
    ComplianceCommands,
    LicenceCommands,
    TermsCommands,
    SharingCommands,
    EnforcementCommands,
    LifecycleCommands,
    BillingCommands,
    RetentionCommands,
    CreditCommands,
):
    """Commands of the core: tenants, users, invites, API keys, pairing keys, agents, usage, audit exports."""

    name = "ownllm"
    snapshotting_intervals = {CreditLedger: SNAPSHOT_EVERY}  # type: ignore[dict-item]

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        keys: KeyStore,
        pepper: bytes,
        hash_credential: CredentialHasher,
        directory: Directory | None = None,
        clock: Callable[[], datetime] = utc_now,
        invite_ttl: timedelta = timedelta(days=7),
        pairing_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self.keys = keys
        self.pepper = pepper
        self.hash_credential = hash_credential
        self.directory = directory
        self.clock = clock
        self.invite_ttl = invite_ttl
        self.pairing_ttl = pairing_ttl
        super().__init__(dict(env))

    def construct_mapper(self) -> Mapper[UUID]:
        """eventsourcing's mapper plus per-subject sealing of personal data."""
        return SealingMapper(self.construct_transcoder(), self.keys)

    def construct_recorder(self) -> ProcessRecorder:
        """A recorder that can also write a reaction's position in the same transaction as its events."""
        return self.factory.process_recorder()
