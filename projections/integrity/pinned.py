"""Checkpoints a tenant saved earlier, read from whatever it saved: one signed note, the JSON that
``GET /api/v1/audit/checkpoints`` answers, or any text holding signed notes (a saved digest e-mail)."""

from __future__ import annotations

import json
import re

SIGNATURE = "\u2014 "  # a signed note's signature lines start with an em dash and a space (C2SP signed-note)
_CHECKPOINT_HEAD = re.compile(r"^[^\s].*\n[0-9]+\n[A-Za-z0-9+/]{43}=\n", re.MULTILINE)


def read_pinned(text: str) -> list[str]:
    """The signed notes in ``text``; the whole text when it holds none (the verifier then says why it fails)."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        data = json.loads(stripped)
        items = data if isinstance(data, list) else data.get("checkpoints", [data])
        return [str(item["note"]) for item in items]
    return notes_in(text) or [text]


def notes_in(text: str) -> list[str]:
    """Every signed checkpoint note in ``text``: origin, size and root lines, any extension lines, a blank
    line, then its signature lines (line ends normalised, as mail may deliver CRLF)."""
    text = text.replace("\r\n", "\n")
    notes = []
    for head in _CHECKPOINT_HEAD.finditer(text):
        rest = text[head.end() :].split("\n")
        extensions = _until_blank(rest)
        signatures = [] if len(extensions) == len(rest) else _signatures(rest[len(extensions) + 1 :])
        if signatures:
            notes.append(head.group(0) + "".join(f"{line}\n" for line in [*extensions, "", *signatures]))
    return notes


def _until_blank(lines: list[str]) -> list[str]:
    """The lines before the first empty one."""
    for at, line in enumerate(lines):
        if not line:
            return lines[:at]
    return lines


def _signatures(lines: list[str]) -> list[str]:
    """The signature lines at the start of ``lines``."""
    for at, line in enumerate(lines):
        if not line.startswith(SIGNATURE):
            return lines[:at]
    return lines
