"""The read side: everything built from the notification log after the fact.

- Read models: the in-memory ``directory`` (what authentication reads, rebuilt at start) and
  tracked SQL views such as ``usage_view`` (each with its own position, resumable, rebuildable).
  ``runner.py`` feeds them, reading each only the event topics it declares.
- Reactions (``reactions.py``): named handlers that may issue commands back into the domain,
  each exactly once per event (its commands and its new position commit together), at most one
  process per handler (advisory or file lock), retried with backoff when they fail.
"""
