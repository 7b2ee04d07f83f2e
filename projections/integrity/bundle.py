"""A tenant's audit bundle, and ``python -m projections.integrity.bundle``: verify one with this package alone.

A bundle is a directory of plain files an auditor can read and check with nothing but this package
(standard library and ``cryptography``; no database, no network, no other part of OwnLLM):

- :mod:`projections.integrity.bundle_format`: the files (what each holds), writing and reading them.
- :mod:`projections.integrity.bundle_check`: :func:`verify_bundle` and its report.

This module is the entry point and the public face of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from projections.integrity.bundle_check import BundleReport, read_pinned, split_pinned, verify_bundle
from projections.integrity.bundle_format import (
    FILES,
    FORMAT,
    MANIFEST,
    Bundle,
    BundleError,
    BundleEvent,
    check_manifest,
    parse,
    read_files,
    render,
    tenant_leaf_data,
    tenant_origin,
    write,
)

__all__ = [
    "FILES",
    "FORMAT",
    "MANIFEST",
    "Bundle",
    "BundleError",
    "BundleEvent",
    "BundleReport",
    "check_manifest",
    "main",
    "parse",
    "read_files",
    "read_pinned",
    "render",
    "split_pinned",
    "tenant_leaf_data",
    "tenant_origin",
    "verify_bundle",
    "write",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m projections.integrity.bundle BUNDLE [--pinned FILE]... [--key VKEY]...``: this package alone."""
    import argparse

    parser = argparse.ArgumentParser(description="Verify an OwnLLM audit bundle offline.")
    parser.add_argument("bundle")
    parser.add_argument("--pinned", action="append", default=[], help="a checkpoint saved earlier (repeat)")
    parser.add_argument("--key", action="append", default=None, help="trust this vkey, not the bundle's (repeat)")
    args = parser.parse_args(argv)
    notes = [note for path in args.pinned for note in read_pinned(Path(path).read_text())]
    report = verify_bundle(args.bundle, notes, args.key)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
