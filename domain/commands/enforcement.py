"""Enforcement: operator tokens, suspensions of a tenant, a user or a key with a reason code, and appeals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain import secrets
from domain.api_key import ApiKey
from domain.appeal import Appeal, Outcome, check_outcome
from domain.commands.base import Commands, check_name, check_reason
from domain.context import SYSTEM, Ctx
from domain.errors import Conflict, Expired, InvalidState, NotFound
from domain.operator import Operator
from domain.sealing import PersonalData
from domain.suspension import SubjectKind, Suspension, check_reason_code, check_subject_kind
from domain.tenant import Tenant
from domain.user import User
from policies.appeals import may_appeal

Subject = Tenant | User | ApiKey


@dataclass(frozen=True, slots=True)
class OperatorToken:
    """A freshly issued operator token: ``secret`` is shown once and never stored."""

    operator_id: UUID
    token_id: UUID
    secret: str
    prefix: str


class EnforcementCommands(Commands):
    """What the operator does to tenants, and how the suspended party answers."""

    # -- operator tokens ---------------------------------------------------------------------

    def issue_operator_token(self, *, name: str, request_id: str) -> OperatorToken:
        """A new token for the operator ``name`` (registered on its first token)."""
        cleaned = check_name(name, "name")
        operator = self._get(Operator.create_id(cleaned))
        if not isinstance(operator, Operator):
            operator_id = Operator.create_id(cleaned)
            operator = Operator(name=PersonalData(operator_id, cleaned), actor=SYSTEM, request_id=request_id)
        secret = secrets.new_secret(secrets.OPERATOR_TOKEN_PREFIX)
        prefix = secrets.visible_prefix(secret)
        token_id = operator.issue_token(prefix, secrets.keyed_hash(self.pepper, secret), SYSTEM, request_id)
        self._save(operator, conflict=Conflict("the operator changed at the same time; retry"))
        return OperatorToken(operator.id, token_id, secret, prefix)

    def revoke_operator_token(self, *, name: str, token_id: UUID, request_id: str) -> None:
        """Stop an operator token working."""
        operator = self._get(Operator.create_id(name.strip()))
        if not isinstance(operator, Operator):
            raise NotFound("operator not found")
        operator.revoke_token(token_id, SYSTEM, request_id)
        self._save(operator)

    # -- suspensions -------------------------------------------------------------------------

    def suspend(self, ctx: Ctx, *, kind: str, subject_id: UUID, reason_code: str, summary: str) -> UUID:
        """Stop a tenant, a user or a key of ``ctx.tenant_id``; returns the suspension (the appealable action)."""
        subject_kind, code = check_subject_kind(kind), check_reason_code(reason_code)
        text = check_reason(summary)
        tenant, subject = self._subject(ctx.tenant_id, subject_kind, subject_id)
        case = Suspension.impose(ctx, subject_kind, subject_id, code, PersonalData(_owner(subject), text), self.clock())
        subject.suspend(ctx, text, code.value, case.id)
        self._save(case, *_counted(ctx, tenant, subject))
        return case.id

    def reinstate(self, ctx: Ctx, *, kind: str, subject_id: UUID, reason: str) -> None:
        """Let a suspended tenant, user or key work again; its open suspension is lifted."""
        tenant, subject = self._subject(ctx.tenant_id, check_subject_kind(kind), subject_id)
        self._save(*self._reinstated(ctx, tenant, subject, check_reason(reason)))

    def _reinstated(self, ctx: Ctx, tenant: Tenant, subject: Subject, reason: str) -> list[Aggregate]:
        """The subject reinstated and its suspension lifted (not saved yet)."""
        case_id = subject.suspension_id if subject.suspended else None
        subject.reinstate(ctx, reason)
        changed: list[Aggregate] = list(_counted(ctx, tenant, subject))
        if case_id is not None:
            case = self._load(Suspension, case_id, ctx.tenant_id)
            if not case.lifted:
                case.lift(ctx)
                changed.append(case)
        return changed

    def _subject(self, tenant_id: UUID, kind: SubjectKind, subject_id: UUID) -> tuple[Tenant, Subject]:
        if kind is SubjectKind.TENANT:
            if subject_id != tenant_id:
                raise NotFound("tenant not found")
            tenant = self._tenant(tenant_id)
            return tenant, tenant
        cls: type[User] | type[ApiKey] = User if kind is SubjectKind.USER else ApiKey
        return self._load_with_tenant(cls, subject_id, tenant_id)

    def close_appeal_window(self, tenant_id: UUID, suspension_id: UUID, now: datetime, request_id: str) -> bool:
        """Record that a suspension's appeal window closed by ``now`` (the sweeper); False when not due or done."""
        case = self._load(Suspension, suspension_id, tenant_id)
        if not case.close_window(Ctx(SYSTEM, tenant_id, request_id), now):
            return False
        self._save(case, conflict=Conflict("the appeal window was closed at the same time"))
        return True

    # -- appeals -----------------------------------------------------------------------------

    def file_appeal(self, ctx: Ctx, *, suspension_id: UUID, statement: str) -> UUID:
        """The suspended party appeals an action, within 30 days of it; one appeal per action."""
        case = self._load(Suspension, suspension_id, ctx.tenant_id)
        now = self.clock()
        if not may_appeal(case.imposed_at, now):
            raise Expired(f"the appeal window closed on {case.appeal_until.isoformat()} (30 days after the suspension)")
        if case.lifted:
            raise InvalidState("the suspension was already lifted; there is nothing to appeal")
        filer = ctx.caller.user_id if ctx.caller is not None else ctx.tenant_id
        appeal = Appeal(
            tenant_id=ctx.tenant_id,
            suspension_id=case.id,
            statement=PersonalData(filer, check_reason(statement)),
            actor=ctx.actor,
            request_id=ctx.request_id,
        )
        self._save(appeal, conflict=Conflict("an appeal against this suspension was already filed"))
        return appeal.id

    def decide_appeal(self, ctx: Ctx, *, appeal_id: UUID, outcome: str, reason: str) -> None:
        """The operator upholds the suspension or lifts it (which reinstates its subject)."""
        decision, text = check_outcome(outcome), check_reason(reason)
        appeal = self._load(Appeal, appeal_id, ctx.tenant_id)
        appeal.decide(ctx, decision, text)
        changed: list[Aggregate] = [appeal]
        if decision is Outcome.LIFTED:
            case = self._load(Suspension, appeal.suspension_id, ctx.tenant_id)
            tenant, subject = self._subject(ctx.tenant_id, SubjectKind(case.subject_kind), case.subject_id)
            if subject.suspended and subject.suspension_id == case.id:
                changed += self._reinstated(ctx, tenant, subject, text)
            elif not case.lifted:
                case.lift(ctx)
                changed.append(case)
        self._save(*changed)


def _owner(subject: Subject) -> UUID:
    """The data subject whose key seals a summary about ``subject``: the tenant, the user, the key's holder."""
    if isinstance(subject, ApiKey):
        return subject.user_id
    return subject.id


def _counted(ctx: Ctx, tenant: Tenant, subject: Subject) -> tuple[Tenant, ...] | tuple[Tenant, Subject]:
    """What to save: the subject, and its tenant when a user's admin standing changed with it."""
    if isinstance(subject, Tenant):
        return (tenant,)
    if isinstance(subject, User):
        if subject.active and subject.role == "admin":
            tenant.appoint_admin(ctx, subject.id)
        else:
            tenant.step_down_admin(ctx, subject.id)
    return (tenant, subject)
