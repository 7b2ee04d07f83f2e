"""The model licence catalogue (``legal/models.toml``): which licence governs a model id (terms §9).

Entries are matched in file order against the id's last path segment, lower-cased, with shell
patterns; the first match governs. A model no entry knows needs an explicit admin acknowledgement
before it is served.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from importlib import resources
from pathlib import Path

KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class InvalidCatalogue(ValueError):
    """The catalogue file is malformed."""


@dataclass(frozen=True, slots=True)
class ModelLicence:
    """What one family of models is licensed under, and what that licence asks of the customer."""

    key: str  # the entry's stable `id`, under which acceptances are recorded, e.g. "llama-3"
    patterns: tuple[str, ...]
    publisher: str
    licence: str
    licence_ids: tuple[str, ...]
    url: str
    commercial_use: str
    prohibited_uses: str
    commercial_mau_limit: int | None = None

    def matches(self, model_id: str) -> bool:
        """Whether this entry governs ``model_id``."""
        name = model_segment(model_id)
        return any(fnmatchcase(name, pattern) for pattern in self.patterns)

    def announced_agrees(self, announced: str | None) -> bool:
        """Whether a licence id an agent announced is one this entry expects (None: nothing to check)."""
        return announced is None or announced.strip().lower() in self.licence_ids


def model_segment(model_id: str) -> str:
    """The part of a model id that patterns match: the last path segment, lower-cased."""
    return model_id.rsplit("/", 1)[-1].strip().lower()


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Every entry, in match order."""

    entries: tuple[ModelLicence, ...]

    def lookup(self, model_id: str) -> ModelLicence | None:
        """The entry governing ``model_id``, or None when the catalogue does not know it."""
        return next((entry for entry in self.entries if entry.matches(model_id)), None)

    def by_key(self, key: str) -> ModelLicence | None:
        """The entry with this key, or None."""
        return next((entry for entry in self.entries if entry.key == key), None)


def parse(text: str) -> Catalogue:
    """A catalogue from TOML text, or :class:`InvalidCatalogue`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidCatalogue(str(error)) from None
    return Catalogue(tuple(_entry(raw, i) for i, raw in enumerate(data.get("model", []))))


@lru_cache(maxsize=1)
def bundled() -> Catalogue:
    """The catalogue shipped with OwnLLM (read once)."""
    return parse((resources.files("legal") / "models.toml").read_text(encoding="utf-8"))


def load(path: Path | None = None) -> Catalogue:
    """The catalogue at ``path``, or the bundled one."""
    return bundled() if path is None else parse(path.read_text(encoding="utf-8"))


def _entry(raw: dict[str, object], index: int) -> ModelLicence:
    try:
        patterns = _strings(raw["patterns"])
        key = str(raw["id"])
        if not KEY.fullmatch(key):
            raise InvalidCatalogue(f"model entry {index}: id must be lower-case letters, digits and dashes")
        limit = raw.get("commercial_mau_limit")
        if limit is not None and (not isinstance(limit, int) or limit <= 0):
            raise InvalidCatalogue(f"model entry {index}: commercial_mau_limit must be a positive integer")
        return ModelLicence(
            key=key,
            patterns=patterns,
            publisher=str(raw["publisher"]),
            licence=str(raw["licence"]),
            licence_ids=tuple(s.lower() for s in _strings(raw["licence_ids"])),
            url=str(raw["url"]),
            commercial_use=str(raw["commercial_use"]),
            prohibited_uses=str(raw["prohibited_uses"]),
            commercial_mau_limit=limit,
        )
    except KeyError as missing:
        raise InvalidCatalogue(f"model entry {index} lacks {missing}") from None


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InvalidCatalogue("patterns and licence_ids must be non-empty lists of strings")
    return tuple(value)


def unknown(catalogue: Catalogue, model_ids: Sequence[str]) -> list[str]:
    """The ids no entry governs (each needs an admin acknowledgement before it is served)."""
    return [m for m in model_ids if catalogue.lookup(m) is None]
