"""The write side: aggregates and their events, the commands, and the sealing of personal data.

- One module per aggregate (``tenant.py``, ``user.py``, ``api_key.py`` ...), events nested in the
  past tense (``ApiKey.Revoked``). Their topics are stored with every event: never move them.
- ONE ``OwnLLM`` application (``application.py``) composes the commands of each context
  (``commands/tenancy.py``, ``access.py``, ``metering.py``): one notification log gives the audit
  trail a single order, one mapper seals personal data per subject (``sealing.py``).
- Who may do what is decided here, never in a controller: the matrix of roles and key scopes
  (``permissions.py``), and who may act on or read another user's objects (``authorization.py``),
  applied by the commands themselves (the caller rides on ``Ctx``) and by the read side.
- Ports are Protocols (``KeyStore``, ``CredentialHasher``, ``Directory``); their implementations
  live in ``adapters/`` (PostgreSQL recorder, key stores, bcrypt), which nothing else in ``domain``
  imports: ``api/services.py`` wires them in. ``tests/test_layers.py`` holds that rule.
"""
