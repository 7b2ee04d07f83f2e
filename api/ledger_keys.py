"""The integrity ledger as settings configure it: its signing key (a file the database never holds), origin, keys.

The signing key is a note signing key (``PRIVATE+KEY+<name>+<id>+<base64>``, Go's sumdb/note text)
read from ``OWNLLM_LEDGER_SIGNING_KEY_FILE``, or generated once into ``var/secrets/`` (0600) when that
is unset. The key's name is the checkpoints' origin: it must stay the same for the life of the log
(tenants' pinned checkpoints carry it), so by default the origin is the key's own name, chosen from
the public URL's host when the key was generated. Rotation: put a new key (same name) in the file and
the old key's vkey in ``OWNLLM_LEDGER_RETIRED_KEYS``; checkpoints it signed keep verifying.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from api.secret_files import SecretFileError, read_or_create_secret
from api.settings import Settings, SettingsError
from projections.integrity.ledger import Ledger
from projections.integrity.note_keys import NoteError, Signer, Verifier
from projections.ledger_records import locate


def default_origin(settings: Settings) -> str:
    """``<public URL host[:port]>/ownllm``."""
    host = urlsplit(settings.base_url).netloc.split("@")[-1] or "ownllm.invalid"
    return f"{host}/ownllm"


def key_file(settings: Settings) -> Path:
    """Where the signing key lives."""
    return Path(settings.ledger_signing_key_file or Path(settings.var_dir) / "secrets" / "ledger-signing-key")


def load_signer(settings: Settings) -> Signer:
    """The signing key from its file (generated on first use when the setting is unset)."""
    path = key_file(settings)
    if settings.ledger_signing_key_file and not path.exists():
        raise SecretFileError(f"OWNLLM_LEDGER_SIGNING_KEY_FILE names {path}, which does not exist")
    name = settings.ledger_origin or default_origin(settings)
    try:
        signer = Signer.parse(read_or_create_secret(path, lambda: Signer.generate(name).skey))
    except NoteError as error:
        raise SecretFileError(f"{path} is not a ledger signing key ({error})") from error
    if settings.ledger_origin and signer.name != settings.ledger_origin:
        raise SecretFileError(
            f"the ledger signing key in {path} is named {signer.name!r}, not OWNLLM_LEDGER_ORIGIN "
            f"({settings.ledger_origin!r}); a key's name is the log's origin and must match"
        )
    return signer


def retired_verifiers(settings: Settings) -> list[Verifier]:
    """The retired keys still accepted (``OWNLLM_LEDGER_RETIRED_KEYS``)."""
    verifiers = []
    for text in (k.strip() for k in settings.ledger_retired_keys.split(",")):
        if text:
            try:
                verifiers.append(Verifier.parse(text))
            except NoteError as error:
                raise SettingsError(f"OWNLLM_LEDGER_RETIRED_KEYS: {error}") from error
    return verifiers


def public_keys(signer: Signer, settings: Settings) -> list[str]:
    """The current key's vkey first, then the retired ones."""
    return [signer.verifier.vkey, *(v.vkey for v in retired_verifiers(settings))]


def build_ledger(settings: Settings, tables: Any, clock: Callable[[], datetime]) -> Ledger:
    """The ledger over ``tables``, signing with the configured key on the configured schedule."""
    signer = load_signer(settings)
    return Ledger(
        tables, signer=signer, origin=signer.name, every_events=settings.checkpoint_every_events,
        every_s=settings.checkpoint_every_s, clock=clock, locate=locate,
    )  # fmt: skip
