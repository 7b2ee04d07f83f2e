"""Our legal documents, public; and the tenant's answer to the terms (accept ahead, or reject in the notice period)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.dependencies import CommandService
from api.principal import Principal
from domain.application import OwnLLM
from domain.context import Ctx
from domain.errors import NotFound
from domain.permissions import Action
from legal.documents import LegalDocument, by_ref, in_force, pending
from projections.directory import Directory

MARKDOWN = "text/markdown; charset=utf-8"


class DocumentOut(msgspec.Struct):
    """One version of one document; ``published_at`` is when the operator announced it (null: not yet)."""

    ref: str
    document: str
    version: int
    title: str
    effective_at: datetime
    material: bool
    sha256: str
    in_force: bool
    published_at: datetime | None


class TermsStatusOut(msgspec.Struct):
    """Where the tenant stands with the terms."""

    in_force: str  # the ref of the terms in force
    accepted_version: int  # the latest version the tenant accepted (0: none recorded yet)
    pending: list[DocumentOut]  # announced changes, not yet in force: reject before effective_at to leave
    rejected_version: int


class RejectedOut(msgspec.Struct):
    """A rejection: the tenant's contract ends without penalty; this refund is due (terms §18)."""

    ref: str
    refund_due_cents: int


def _out(document: LegalDocument, now: datetime, directory: Directory) -> DocumentOut:
    return DocumentOut(
        document.ref, document.kind, document.version, document.title, document.effective_at, document.material,
        document.sha256, document.effective_at <= now, directory.publications.get(document.ref),
    )  # fmt: skip


def _visible(document: LegalDocument, now: datetime, directory: Directory) -> bool:
    """A version is public once in force or announced; a file waiting for its publication is not."""
    return document.effective_at <= now or document.ref in directory.publications


class LegalController(Controller):
    """The terms, privacy policy and DPA, every version with its dates and digest."""

    path = "/api/v1/legal"
    tags = ["legal"]

    @get("/", operation_id="listLegalDocuments", sync_to_thread=False)
    def list_documents(
        self,
        legal_documents: NamedDependency[Sequence[LegalDocument]],
        directory: NamedDependency[Directory],
        now: NamedDependency[datetime],
    ) -> list[DocumentOut]:
        """Every version in force or announced, oldest first (public: a signup names the terms it accepts)."""
        documents = legal_documents
        return [_out(d, now, directory) for d in documents if _visible(d, now, directory)]

    @get("/{ref:str}", operation_id="getLegalDocument", sync_to_thread=False, media_type=MARKDOWN)
    def get_document(
        self,
        legal_documents: NamedDependency[Sequence[LegalDocument]],
        directory: NamedDependency[Directory],
        now: NamedDependency[datetime],
        ref: FromPath[str],
    ) -> Response[str]:
        """The text of one version, as Markdown, with its digest in ``ETag``."""
        document = by_ref(legal_documents, ref)
        if document is None or not _visible(document, now, directory):
            raise NotFound(f"no legal document {ref!r}")
        return Response(
            document.body, media_type="text/markdown; charset=utf-8", headers={"ETag": f'"{document.sha256}"'}
        )


class TermsController(Controller):
    """The tenant's answer to the terms."""

    path = "/api/v1/terms"
    tags = ["legal"]

    @get("/", operation_id="getTermsStatus", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def status(
        self,
        principal: NamedDependency[Principal],
        legal_documents: NamedDependency[Sequence[LegalDocument]],
        directory: NamedDependency[Directory],
        now: NamedDependency[datetime],
    ) -> TermsStatusOut:
        """The terms in force, the version the tenant accepted, and announced changes it may still reject."""
        documents = legal_documents
        current = in_force(documents, "terms", now)
        tenant = directory.tenants[principal.tenant_id]
        announced = [d for d in pending(documents, "terms", now) if d.ref in directory.publications]
        return TermsStatusOut(
            in_force=current.ref if current else "",
            accepted_version=tenant.terms_version,
            pending=[_out(d, now, directory) for d in announced],
            rejected_version=tenant.terms_rejected,
        )

    @post("/{ref:str}/accept", operation_id="acceptTerms", opt={"action": Action.TERMS_ANSWER}, sync_to_thread=True,
          status_code=204)  # fmt: skip
    def accept(self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService], ref: FromPath[str]) -> None:
        """Accept a version of the terms explicitly (ahead of its date, or the one in force)."""
        commands.run(OwnLLM.accept_terms, ctx, ref, "explicit")

    @post("/{ref:str}/reject", operation_id="rejectTerms", opt={"action": Action.TERMS_ANSWER}, sync_to_thread=True)
    def reject(
        self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService], ref: FromPath[str]
    ) -> RejectedOut:
        """Reject an announced change before it takes effect: the contract ends without penalty (terms §18)."""
        return RejectedOut(ref, commands.run(OwnLLM.reject_terms, ctx, ref))
