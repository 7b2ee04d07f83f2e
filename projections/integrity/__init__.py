"""The integrity ledger's pure core: an RFC 9162 Merkle tree, C2SP signed checkpoints, and an offline verifier.

This package imports only the standard library and ``cryptography`` (never the rest of OwnLLM), so an
auditor can run ``ownllm audit verify`` with nothing but these modules and a bundle:

- ``merkle``: leaf and node hashes, an append-only tree over a pluggable store of complete-subtree
  hashes, inclusion and consistency proofs and their verification (RFC 9162 §2.1).
- ``notes``: C2SP ``signed-note`` (Ed25519) and ``tlog-checkpoint`` text formats, verifier keys.
- ``sqlite_store``: the node store in an SQLite table (the caller owns the transaction).
- ``verify``: checks a tenant's events, their proofs and checkpoints against known public keys and
  against checkpoints the tenant pinned earlier, returning a report.
"""
