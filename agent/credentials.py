"""The agent's NATS credentials from pairing, stored as a JSON file only its owner can read (0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec

ENV_PATH = "OWNLLM_AGENT_CREDENTIALS"


class CredentialsError(RuntimeError):
    """Credentials are missing, unreadable, or would be overwritten."""


class Credentials(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What pairing returns: who the agent is and how it reaches NATS."""

    agent_id: str
    tenant_id: str
    nats_url: str
    nats_user: str
    nats_password: str

    def __repr__(self) -> str:
        """Never show the password."""
        shown = f"agent_id={self.agent_id!r}, tenant_id={self.tenant_id!r}, nats_url={self.nats_url!r}"
        return f"Credentials({shown}, nats_password=***)"


def default_path() -> Path:
    """``$OWNLLM_AGENT_CREDENTIALS`` or ``~/.config/ownllm-agent/credentials.json``."""
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".config" / "ownllm-agent" / "credentials.json"


def save(credentials: Credentials, path: Path, force: bool = False) -> Path:
    """Write the credentials with mode 0600; refuse to overwrite unless ``force``."""
    path = path.expanduser()
    if path.exists() and not force:
        raise CredentialsError(f"{path} already exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise CredentialsError(f"{path} already exists; pass --force to replace it") from exc
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(msgspec.json.format(msgspec.json.encode(credentials), indent=2) + b"\n")
    return path


def load(path: Path) -> Credentials:
    """Read stored credentials, with a hint to pair when they are missing."""
    path = path.expanduser()
    if not path.exists():
        raise CredentialsError(f"no credentials at {path}; run `ownllm-agent pair` first")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialsError(f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
    try:
        return msgspec.json.decode(path.read_bytes(), type=Credentials)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise CredentialsError(f"{path} is not a valid credentials file: {exc}") from exc
