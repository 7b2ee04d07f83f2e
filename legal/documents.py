"""Our legal documents (terms, privacy policy, DPA) as versioned files with front matter, and their loader.

Each file ``legal/documents/<document>-<version>.md`` starts with a front matter block::

    ---
    document: terms
    version: 1
    published_at: 2026-11-30T00:00:00Z
    effective_at: 2026-11-30T00:00:00Z
    material: true
    ---

A version takes effect at ``effective_at``; a material change (any version after the first) must be
published at least the notice period before (``policies.terms``), which loading checks. The
version in force at an instant is the one with the latest ``effective_at`` not after it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path

from policies.terms import check_notice

KINDS = ("terms", "privacy", "dpa")
REQUIRED = ("document", "version", "title", "published_at", "effective_at", "material")


class InvalidDocument(ValueError):
    """A legal document file whose front matter is missing, malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class LegalDocument:
    """One version of one document: its dates, whether the change is material, its text and digest."""

    kind: str
    version: int
    title: str
    published_at: datetime
    effective_at: datetime
    material: bool
    body: str
    sha256: str  # of the whole file, so an acceptance names the exact text accepted

    @property
    def ref(self) -> str:
        """A short stable reference, e.g. ``terms-1``."""
        return f"{self.kind}-{self.version}"


def parse(text: str, source: str = "<text>") -> LegalDocument:
    """One document from its file text, or :class:`InvalidDocument` naming what is wrong."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in (line.strip() for line in lines[1:]):
        raise InvalidDocument(f"{source}: no front matter block")
    end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    fields = dict(_field(line, source) for line in lines[1:end] if line.strip())
    missing = [name for name in REQUIRED if name not in fields]
    if missing:
        raise InvalidDocument(f"{source}: front matter lacks {', '.join(missing)}")
    if fields["document"] not in KINDS:
        raise InvalidDocument(f"{source}: document must be one of {', '.join(KINDS)}")
    if fields["material"] not in ("true", "false"):
        raise InvalidDocument(f"{source}: material must be true or false")
    doc = LegalDocument(
        kind=fields["document"],
        version=_int(fields["version"], source),
        title=fields["title"],
        published_at=_instant(fields["published_at"], source),
        effective_at=_instant(fields["effective_at"], source),
        material=fields["material"] == "true",
        body="\n".join(lines[end + 1 :]).strip() + "\n",
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    try:
        if doc.version > 1:  # the first version is not a change: it applies from publication
            check_notice(doc.published_at, doc.effective_at, doc.material)
    except ValueError as error:
        raise InvalidDocument(f"{source}: {error}") from None
    return doc


def load(folder: Path | None = None) -> tuple[LegalDocument, ...]:
    """Every document version in ``folder`` (the bundled ``legal/documents`` by default), checked."""
    if folder is None:
        root = resources.files("legal") / "documents"
        texts = [
            (entry.name, entry.read_text(encoding="utf-8")) for entry in root.iterdir() if entry.name.endswith(".md")
        ]
    else:
        texts = [(path.name, path.read_text(encoding="utf-8")) for path in folder.glob("*.md")]
    docs = tuple(sorted((parse(text, name) for name, text in texts), key=lambda d: (d.kind, d.version)))
    _check_versions(docs)
    return docs


def in_force(documents: Iterable[LegalDocument], kind: str, now: datetime) -> LegalDocument | None:
    """The version of ``kind`` in force at ``now``: the latest effective one, or None before the first."""
    effective = [d for d in documents if d.kind == kind and d.effective_at <= now]
    return max(effective, key=lambda d: (d.effective_at, d.version), default=None)


def pending(documents: Iterable[LegalDocument], kind: str, now: datetime) -> Sequence[LegalDocument]:
    """Published versions of ``kind`` not yet in force at ``now`` (their notice period is running)."""
    return sorted(
        (d for d in documents if d.kind == kind and d.published_at <= now < d.effective_at), key=lambda d: d.version
    )


def _check_versions(docs: Sequence[LegalDocument]) -> None:
    """Versions of one document are unique and take effect in version order."""
    for kind in KINDS:
        versions = [d for d in docs if d.kind == kind]
        for earlier, later in itertools.pairwise(versions):
            if later.version == earlier.version:
                raise InvalidDocument(f"{kind} version {later.version} appears twice")
            if later.effective_at <= earlier.effective_at:
                raise InvalidDocument(f"{later.ref} must take effect after {earlier.ref}")


def _field(line: str, source: str) -> tuple[str, str]:
    key, sep, value = line.partition(":")
    if not sep:
        raise InvalidDocument(f"{source}: front matter line without a colon: {line[:60]!r}")
    return key.strip(), value.strip()


def _int(value: str, source: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise InvalidDocument(f"{source}: version must be a positive integer")
    return int(value)


def _instant(value: str, source: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidDocument(f"{source}: {value!r} is not an ISO 8601 instant") from None
    if instant.tzinfo is None:
        raise InvalidDocument(f"{source}: {value!r} needs a time zone (use Z for UTC)")
    return instant


@lru_cache(maxsize=1)
def bundled() -> tuple[LegalDocument, ...]:
    """The documents shipped with OwnLLM (read and checked once)."""
    return load()


def by_ref(documents: Iterable[LegalDocument], ref: str) -> LegalDocument | None:
    """The document version ``ref`` (``terms-2``), or None."""
    return next((d for d in documents if d.ref == ref), None)
