"""A tenant's audit bundle as files: what each holds, writing them, and reading them back.

A bundle is a directory of plain files an auditor can read and check with nothing but this package
(standard library and ``cryptography``; no database, no network, no other part of OwnLLM):

- ``events.jsonl``: one line per event of the tenant, ``{"leaf", "tenant_leaf", "notification_id",
  "stored"}``: its index in the global tree, in the tenant's tree, its place in the event store, and
  its bytes exactly as stored (base64; personal data sealed, so an erasure never changes them).
- ``proofs.jsonl``: per event, its inclusion proof in the global tree against the newest global
  checkpoint and in the tenant's tree against the newest tenant checkpoint.
- ``checkpoints.json``: the signed checkpoints (C2SP signed notes) of the global log and of the tenant's.
- ``consistency.json``: for every checkpoint, the consistency proof to the newest of its tree.
- ``keys.txt``: the verifier keys (current and retired), one vkey per line.
- ``manifest.json``: the format, the origin, the tenant, the time range exported, and the SHA-256 of
  every other file (a file edited, added or removed is named).

Verifying a bundle is :mod:`projections.integrity.bundle_check`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from projections.integrity.verify import InclusionProof, Problem

FORMAT = "ownllm-audit-bundle/1"
MANIFEST = "manifest.json"
FILES = ("events.jsonl", "proofs.jsonl", "checkpoints.json", "consistency.json", "keys.txt")


class BundleError(ValueError):
    """A bundle that cannot be read at all."""


def tenant_origin(origin: str, tenant_id: str) -> str:
    """The origin line of a tenant's own tree: ``<origin>/tenant/<tenant id>``."""
    return f"{origin}/tenant/{tenant_id}"


def tenant_leaf_data(leaf: int, global_leaf_hash: bytes) -> bytes:
    """What a tenant tree's leaf holds: the event's 8-byte global leaf index, then its global leaf hash."""
    return leaf.to_bytes(8, "big") + global_leaf_hash


@dataclass(frozen=True, slots=True)
class BundleEvent:
    """One of the tenant's events as the bundle carries it."""

    leaf: int
    tenant_leaf: int
    notification_id: int
    stored: bytes


@dataclass
class Bundle:
    """Everything a tenant's auditor needs to verify, parsed."""

    origin: str
    tenant_id: str
    events: list[BundleEvent]
    global_proofs: list[InclusionProof]
    tenant_proofs: list[InclusionProof]
    global_checkpoints: list[str]
    tenant_checkpoints: list[str]
    global_consistency: dict[tuple[int, int], list[bytes]]
    tenant_consistency: dict[tuple[int, int], list[bytes]]
    keys: list[str]
    since: str | None = None
    until: str | None = None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise BundleError("expected base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise BundleError("not base64") from error


def _json_line(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True) + "\n"


def _proof_out(proof: InclusionProof) -> dict[str, Any]:
    return {"index": proof.index, "tree_size": proof.tree_size, "hashes": [_b64(h) for h in proof.hashes]}


def _consistency_out(proofs: Mapping[tuple[int, int], Sequence[bytes]]) -> list[dict[str, Any]]:
    return [{"from": a, "to": b, "hashes": [_b64(h) for h in p]} for (a, b), p in sorted(proofs.items())]


def render(bundle: Bundle) -> dict[str, bytes]:
    """The bundle's files by name, the manifest with every other file's SHA-256 included."""
    events = "".join(
        _json_line({"leaf": e.leaf, "tenant_leaf": e.tenant_leaf, "notification_id": e.notification_id,
                    "stored": _b64(e.stored)})
        for e in bundle.events
    )  # fmt: skip
    proofs = "".join(
        _json_line({"global": _proof_out(g), "tenant": _proof_out(t)})
        for g, t in zip(bundle.global_proofs, bundle.tenant_proofs, strict=True)
    )
    files = {
        "events.jsonl": events.encode(),
        "proofs.jsonl": proofs.encode(),
        "checkpoints.json": json.dumps(
            {"global": bundle.global_checkpoints, "tenant": bundle.tenant_checkpoints}, indent=1
        ).encode(),
        "consistency.json": json.dumps(
            {
                "global": _consistency_out(bundle.global_consistency),
                "tenant": _consistency_out(bundle.tenant_consistency),
            }
        ).encode(),
        "keys.txt": "".join(f"{k}\n" for k in bundle.keys).encode(),
    }
    manifest = {
        "format": FORMAT,
        "origin": bundle.origin,
        "tenant_id": bundle.tenant_id,
        "since": bundle.since,
        "until": bundle.until,
        "files": {name: hashlib.sha256(content).hexdigest() for name, content in sorted(files.items())},
    }
    files[MANIFEST] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    return files


def write(bundle: Bundle, path: str | Path) -> Path:
    """Write the bundle's files into the directory ``path`` (created; it must not hold a bundle already)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MANIFEST).exists():
        raise BundleError(f"{folder} already holds a bundle")
    for name, content in render(bundle).items():
        (folder / name).write_bytes(content)
    return folder


def read_files(path: str | Path) -> dict[str, bytes]:
    """Every regular file directly in the bundle directory, by name."""
    folder = Path(path)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a bundle directory")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BundleError("expected an integer")
    return value


def _proof_in(raw: Any) -> InclusionProof:
    return InclusionProof(_int(raw["index"]), _int(raw["tree_size"]), tuple(_unb64(h) for h in raw["hashes"]))


def _consistency_in(raw: Any) -> dict[tuple[int, int], list[bytes]]:
    proofs: dict[tuple[int, int], list[bytes]] = {}
    for item in raw:
        proofs[(_int(item["from"]), _int(item["to"]))] = [_unb64(h) for h in item["hashes"]]
    return proofs


def _lines(content: bytes) -> list[Any]:
    return [json.loads(line) for line in content.decode("utf-8").splitlines() if line.strip()]


def _notes(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise BundleError("checkpoints are lists of signed notes")
    return list(raw)


def parse(files: Mapping[str, bytes]) -> Bundle:
    """The bundle of these files (the manifest's hashes are checked by :func:`check_manifest`)."""
    try:
        manifest = json.loads(files[MANIFEST])
        if manifest.get("format") != FORMAT:
            raise BundleError(f"not a bundle of format {FORMAT}")
        events = [
            BundleEvent(_int(e["leaf"]), _int(e["tenant_leaf"]), _int(e["notification_id"]), _unb64(e["stored"]))
            for e in _lines(files["events.jsonl"])
        ]
        proofs = _lines(files["proofs.jsonl"])
        checkpoints = json.loads(files["checkpoints.json"])
        consistency = json.loads(files["consistency.json"])
        keys = [line for line in files["keys.txt"].decode("utf-8").splitlines() if line.strip()]
        return Bundle(
            origin=str(manifest["origin"]),
            tenant_id=str(manifest["tenant_id"]),
            events=events,
            global_proofs=[_proof_in(p["global"]) for p in proofs],
            tenant_proofs=[_proof_in(p["tenant"]) for p in proofs],
            global_checkpoints=_notes(checkpoints["global"]),
            tenant_checkpoints=_notes(checkpoints["tenant"]),
            global_consistency=_consistency_in(consistency["global"]),
            tenant_consistency=_consistency_in(consistency["tenant"]),
            keys=keys,
            since=manifest.get("since"),
            until=manifest.get("until"),
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # JSON, UTF-8, a missing or odd field
        raise BundleError(f"malformed bundle ({type(error).__name__}: {error})") from error


def check_manifest(files: Mapping[str, bytes]) -> list[Problem]:
    """Each file the manifest lists has its hash; no file is missing or added."""
    try:
        listed = json.loads(files[MANIFEST])["files"]
        if not isinstance(listed, dict):
            raise TypeError("files")
    except (KeyError, TypeError, ValueError) as error:
        return [Problem(f"manifest: unreadable ({type(error).__name__})")]
    problems = []
    for name in sorted(set(FILES) | set(listed) | (set(files) - {MANIFEST})):
        if name not in listed:
            problems.append(Problem(f"manifest: {name} is not listed"))
        elif name not in files:
            problems.append(Problem(f"manifest: {name} is missing"))
        elif hashlib.sha256(files[name]).hexdigest() != listed[name]:
            problems.append(Problem(f"manifest: {name} does not have the hash the manifest lists"))
    return problems
