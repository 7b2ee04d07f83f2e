"""Adapters: the storage and crypto behind the domain's ports, wired in by ``api/services.py``.

Nothing else in ``domain`` imports this package (a test checks it): the domain names what it needs
(``KeyStore``, ``CredentialHasher``, eventsourcing's recorders) and the composition root picks these.
"""
