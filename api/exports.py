"""Data exports (GDPR Art. 20): a zip of JSON files (CSV where a person would open it), a manifest and
SHA-256 checksums, written entry by entry to a file (memory stays flat whatever the tenant's size).

Contents, each filtered to the export's tenant (and for a user's own export, to that user):
``tenant.json``, ``users.json``/``users.csv``, ``roles.json``, ``api_keys.json``/``api_keys.csv``
(metadata: never a secret or its hash), ``agents.json``, ``usage.csv`` (daily counts),
``audit_events.jsonl`` (the audit log's rows with display names), ``deletions.json``, then
``SHA256SUMS`` and ``manifest.json`` (every file's size, rows and SHA-256, and what the platform
does not hold yet: terms acceptances, billing records). The file lives in ``var/exports`` until
its link expires (24 h) or its subject is erased; progress is a small JSON file beside it, so
any API process on the machine reports it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import msgspec

from api.audit_export import jsonl_lines, safe_cell
from api.audit_names import Names
from domain.roles import SCOPES_BY_ROLE
from projections.audit_log import AuditFilter, AuditProjection
from projections.billing_view import BillingView
from projections.credit_view import CreditProjection
from projections.directory import Directory, TenantView
from projections.lifecycle import ExportView, LifecycleView
from projections.usage_view import UsageProjection

FORMAT_VERSION = 1
NOT_PRESENT: tuple[str, ...] = ()  # kinds of data the platform does not record (none left since terms and billing)
CHUNK = 1024 * 1024


class ExportFiles:
    """Where export files and their progress live: ``<dir>/<id>.zip`` and ``<dir>/<id>.progress.json``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, export_id: UUID) -> Path:
        """The finished file."""
        return self.directory / f"{export_id}.zip"

    def _partial(self, export_id: UUID) -> Path:
        return self.directory / f"{export_id}.zip.part"

    def _progress(self, export_id: UUID) -> Path:
        return self.directory / f"{export_id}.progress.json"

    def progress(self, export_id: UUID) -> dict[str, Any] | None:
        """The builder's last report: ``{"step": n, "steps": m, "file": name, "rows": k}``."""
        try:
            return dict(json.loads(self._progress(export_id).read_text()))
        except (OSError, ValueError):
            return None

    def report(self, export_id: UUID, **progress: Any) -> None:
        """Record progress (atomically: a reader sees the old or the new report)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.directory / f"{export_id}.progress.tmp"
        tmp.write_text(json.dumps(progress))
        tmp.replace(self._progress(export_id))

    def delete(self, export_id: UUID) -> bool:
        """Remove the file, any partial one and the progress; True when something was removed."""
        removed = False
        for path in (self.path(export_id), self._partial(export_id), self._progress(export_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
        return removed

    def existing(self) -> list[UUID]:
        """Ids of every export file on disk (finished or partial)."""
        if not self.directory.exists():
            return []
        ids = set()
        for path in self.directory.iterdir():
            with contextlib.suppress(ValueError):
                ids.add(UUID(path.name.split(".", 1)[0]))
        return sorted(ids)


@dataclass(frozen=True, slots=True)
class Built:
    """A finished export file."""

    files: int
    size: int
    sha256: str


@dataclass
class ExportBuilder:
    """Writes an export's zip from the read models; see the module docstring."""

    files: ExportFiles
    directory: Directory
    lifecycle: LifecycleView
    usage: UsageProjection
    audit: AuditProjection
    billing: BillingView | None = None  # account, subscription, invoices, payments (tenant exports)
    credits: CreditProjection | None = None  # prepaid-credit lots and movements (tenant exports)
    default_jurisdiction: str = ""  # a tenant's that set none (settings)

    def build(self, export: ExportView, now: datetime) -> Built:
        """Write the zip (replacing a partial one from a crash), then return its size and SHA-256."""
        self.files.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.files._partial(export.id)
        steps = _Steps(self.files, export.id)
        manifest: list[dict[str, Any]] = []
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, chunks in self._entries(export, steps):
                manifest.append(_write(zf, name, chunks))
            sums = "".join(f"{m['sha256']}  {m['name']}\n" for m in manifest)
            zf.writestr("SHA256SUMS", sums)
            zf.writestr("manifest.json", _manifest(export, now, manifest))
        partial.replace(self.files.path(export.id))
        steps.done()
        size, digest = _digest(self.files.path(export.id))
        return Built(files=len(manifest) + 2, size=size, sha256=digest)

    def _entries(self, export: ExportView, steps: _Steps) -> Iterator[tuple[str, Iterable[bytes]]]:
        d, tenant_id = self.directory, export.tenant_id
        only = export.subject_id if export.scope == "user" else None
        tenant = d.tenants[tenant_id]
        users = [u for u in d.tenant_users(tenant_id) if only is None or u.id == only]
        keys = [k for k in d.tenant_keys(tenant_id, only)]
        steps.next("tenant.json")
        yield "tenant.json", [_json({"id": tenant.id, "slug": tenant.slug, "name": tenant.name,
                                     "registered_at": tenant.registered_at, "suspended": tenant.suspended,
                                     "terminated": tenant.terminated, "plan": tenant.plan,
                                     **self._jurisdiction(tenant)})]  # fmt: skip
        user_rows = [{"id": u.id, "name": u.name, "email": u.email, "role": u.role, "status": u.status,
                      "joined_at": u.joined_at} for u in users]  # fmt: skip
        steps.next("users")
        yield "users.json", [_json(user_rows)]
        yield "users.csv", _csv(["id", "name", "email", "role", "status", "joined_at"], user_rows)
        yield "roles.json", [_json({"scopes_by_role": {r.value: sorted(s) for r, s in SCOPES_BY_ROLE.items()},
                                    "assignments": {str(u.id): u.role for u in users}})]  # fmt: skip
        key_rows = [{"id": k.id, "user_id": k.user_id, "name": k.name, "prefix": k.prefix, "scopes": sorted(k.scopes),
                     "issued_at": k.issued_at, "expires_at": k.expires_at, "revoked_at": k.revoked_at,
                     "issued_by": k.issued_by} for k in keys]  # fmt: skip
        steps.next("api keys")
        yield "api_keys.json", [_json(key_rows)]
        yield "api_keys.csv", _csv(["id", "user_id", "name", "prefix", "scopes", "issued_at", "expires_at",
                                    "revoked_at", "issued_by"], key_rows)  # fmt: skip
        if only is None:
            agents = [{"id": a.id, "name": a.name, "paired_at": a.paired_at, "revoked_at": a.revoked_at}
                      for a in d.tenant_agents(tenant_id)]  # fmt: skip
            yield "agents.json", [_json(agents)]
        steps.next("usage")
        yield "usage.csv", self._usage(tenant_id, only)
        steps.next("audit events")
        yield "audit_events.jsonl", self._audit(tenant_id, only, steps)
        deletions = [{"id": v.id, "subject_id": v.subject_id, "subject_kind": v.subject_kind, "cause": v.cause,
                      "requested_at": v.requested_at, "due_at": v.due_at, "status": v.status}
                     for v in self.lifecycle.deletions.values()
                     if v.tenant_id == tenant_id and (only is None or v.subject_id == only)]  # fmt: skip
        yield "deletions.json", [_json(deletions)]
        if only is None:
            steps.next("terms and billing")
            yield "terms.json", [_json(self._terms(tenant_id))]
            yield "billing.json", [_json(self._billing(tenant_id))]

    def _jurisdiction(self, tenant: TenantView) -> dict[str, Any]:
        """Whose law keeps the tenant's activity records, and whether that is the operator's default."""
        return {"jurisdiction": tenant.jurisdiction or self.default_jurisdiction,
                "jurisdiction_default": not tenant.jurisdiction}  # fmt: skip

    def _terms(self, tenant_id: UUID) -> dict[str, Any]:
        """The tenant's standing with the terms, model licences and opt-in features (each answer's time and
        actor are in audit_events.jsonl)."""
        tenant = self.directory.tenants[tenant_id]
        return {"terms_accepted_version": tenant.terms_version, "terms_rejected_version": tenant.terms_rejected,
                "model_licences_accepted": sorted(self.directory.accepted_licences(tenant_id)),
                "features_on": sorted(self.directory.features_on(tenant_id))}  # fmt: skip

    def _billing(self, tenant_id: UUID) -> dict[str, Any]:
        """What billing holds for the tenant: its account, plan, invoices, payments and credit lots."""
        view = self.billing
        out: dict[str, Any] = {"account": None, "subscription": None, "invoices": [], "payments": [], "credit_lots": []}
        if view is not None:
            account, subscription = view.accounts.get(tenant_id), view.subscriptions.get(tenant_id)
            out["account"] = dataclasses.asdict(account) if account is not None else None
            out["subscription"] = dataclasses.asdict(subscription) if subscription is not None else None
            out["invoices"] = [dataclasses.asdict(i) for i in view.tenant_invoices(tenant_id)]
            out["payments"] = [dataclasses.asdict(p) for p in view.tenant_payments(tenant_id)]
        if self.credits is not None:
            out["credit_lots"] = [dataclasses.asdict(lot) for lot in self.credits.lots(tenant_id)]
        return out

    def _usage(self, tenant_id: UUID, only: UUID | None) -> Iterator[bytes]:
        rows = self.usage.query(tenant_id, user_id=only)
        header = ["day", "model", "user_id", "key_id", "requests", "prompt_tokens", "completion_tokens", "duration_ms"]
        yield from _csv(header, ({"day": r.day, "model": r.model, "user_id": r.user_id, "key_id": r.key_id,
                                  "requests": r.requests, "prompt_tokens": r.prompt_tokens,
                                  "completion_tokens": r.completion_tokens, "duration_ms": r.duration_ms}
                                 for r in rows))  # fmt: skip

    def _audit(self, tenant_id: UUID, only: UUID | None, steps: _Steps) -> Iterator[bytes]:
        names = Names(self.directory, tenant_id)
        where = AuditFilter(tenant_id=tenant_id)
        if only is not None:
            where = AuditFilter(tenant_id=tenant_id, involves=only, involves_actors=names.actors_of(only))
        rows = 0
        for chunk in jsonl_lines(self.audit.scan_raw(where), names):
            rows += chunk.count(b"\n")
            steps.rows(rows)
            yield chunk


class _Steps:
    """Progress reports, at most one per step or per 10,000 rows."""

    STEPS = 5

    def __init__(self, files: ExportFiles, export_id: UUID) -> None:
        self.files, self.export_id, self.step, self.file, self.reported = files, export_id, 0, "", 0

    def next(self, file: str) -> None:
        self.step, self.file = self.step + 1, file
        self.files.report(self.export_id, step=self.step, steps=self.STEPS, file=file, rows=0, done=False)

    def rows(self, rows: int) -> None:
        if rows - self.reported >= 10_000:
            self.reported = rows
            self.files.report(self.export_id, step=self.step, steps=self.STEPS, file=self.file, rows=rows, done=False)

    def done(self) -> None:
        self.files.report(self.export_id, step=self.STEPS, steps=self.STEPS, file="", rows=self.reported, done=True)


def _write(zf: zipfile.ZipFile, name: str, chunks: Iterable[bytes]) -> dict[str, Any]:
    """One zip entry from chunks, hashed and counted on the way (nothing held but a chunk)."""
    digest, size, lines = hashlib.sha256(), 0, 0
    with zf.open(name, "w", force_zip64=True) as entry:
        for chunk in chunks:
            entry.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
    return {"name": name, "bytes": size, "lines": lines, "sha256": digest.hexdigest()}


def _manifest(export: ExportView, now: datetime, files: list[dict[str, Any]]) -> bytes:
    return _json({
        "format_version": FORMAT_VERSION,
        "export_id": export.id,
        "tenant_id": export.tenant_id,
        "scope": export.scope,
        "subject_id": export.subject_id,
        "created_at": now,
        "files": files,
        "not_present": list(NOT_PRESENT),
        "checksums": "SHA-256 of each file's bytes; also in SHA256SUMS (sha256sum -c SHA256SUMS)",
    })  # fmt: skip


def _json(value: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def _csv(header: list[str], rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """CSV a spreadsheet opens (BOM, quoted, formula characters escaped), a thousand rows per chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    pending = 0
    first = True
    for row in rows:
        writer.writerow([_cell(row[column]) for column in header])
        pending += 1
        if pending == 1000:
            yield _take(buffer, first)
            first, pending = False, 0
    yield _take(buffer, first)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return " ".join(map(str, value))
    return safe_cell(str(value))


def _take(buffer: io.StringIO, first: bool) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return (("\ufeff" if first else "") + text).encode()


def _digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    """An open file a megabyte at a time (the download streams it), closed at the end."""
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk
