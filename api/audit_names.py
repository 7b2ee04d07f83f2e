"""Display names for audit rows, looked up as the log is read: rows themselves hold only ids."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.context import SYSTEM
from projections.directory import Directory

MAX_KEYS_PER_USER = 500  # a bound on one query's parameters; no user holds that many keys


class Names:
    """Names of a tenant's users, keys, agents and the tenant itself, from the directory."""

    def __init__(self, directory: Directory, tenant_id: UUID) -> None:
        self._directory = directory
        self._tenant_id = tenant_id

    def actor(self, actor: str) -> str:
        """``user:<id>`` -> the user's name; a key -> its holder's name and the key's name; else as given."""
        kind, _, raw = actor.partition(":")
        if actor == SYSTEM or not raw:
            return actor
        try:
            object_id = UUID(raw)
        except ValueError:
            return actor
        if kind == "key":
            key = self._directory.in_tenant(self._directory.keys, object_id, self._tenant_id)
            if key is None:
                return actor
            return f"{self.subject('user', key.user_id) or key.user_id} (key {key.name})"
        return self.subject(kind, object_id) or actor

    def subject(self, kind: str, subject_id: UUID) -> str | None:
        """The subject's display name, or None when it has none (invites carry only an e-mail)."""
        d = self._directory
        if kind == "tenant":
            tenant = d.tenants.get(subject_id)
            return tenant.name if tenant is not None and subject_id == self._tenant_id else None
        tables: dict[str, dict[UUID, Any]] = {"user": d.users, "api_key": d.keys, "agent": d.agents}
        table = tables.get(kind)
        found = d.in_tenant(table, subject_id, self._tenant_id) if table is not None else None
        return getattr(found, "name", None)

    def every_actor(self) -> dict[str, str]:
        """Each of the tenant's actor names (``user:``, ``key:``, ``agent:``) with its display name (exports)."""
        d, tenant = self._directory, self._tenant_id
        names = {f"user:{u.id}": u.name for u in d.tenant_users(tenant)}
        names |= {f"agent:{a.id}": a.name for a in d.tenant_agents(tenant)}
        names |= {f"key:{k.id}": self.actor(f"key:{k.id}") for k in d.tenant_keys(tenant)}
        return names

    def every_subject(self) -> dict[str, str]:
        """Each named subject of the tenant (itself, users, keys, agents) by id, with its display name (exports)."""
        d, tenant = self._directory, self._tenant_id
        names = {str(u.id): u.name for u in d.tenant_users(tenant)}
        names |= {str(k.id): k.name for k in d.tenant_keys(tenant)}
        names |= {str(a.id): a.name for a in d.tenant_agents(tenant)}
        if (found := d.tenants.get(tenant)) is not None:
            names[str(tenant)] = found.name
        return names

    def actors_of(self, subject_id: UUID) -> tuple[str, ...]:
        """The actor names a subject acts under: a user through each of its keys, a key or an agent itself."""
        d = self._directory
        if d.in_tenant(d.users, subject_id, self._tenant_id) is not None:
            keys = d.tenant_keys(self._tenant_id, subject_id)[:MAX_KEYS_PER_USER]
            return (f"user:{subject_id}", *(f"key:{k.id}" for k in keys))
        for kind, table in (("key", d.keys), ("agent", d.agents)):
            if d.in_tenant(table, subject_id, self._tenant_id) is not None:
                return (f"{kind}:{subject_id}",)
        return ()
