"""The operator: whoever runs the platform, a principal apart from every tenant, with its own tokens."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidState, NotFound
from domain.ids import NAMESPACE
from domain.sealing import PersonalData


def operator_actor(operator_id: UUID) -> str:
    """The actor recorded on events an operator causes."""
    return f"operator:{operator_id}"


class Operator(Aggregate):
    """A named operator; its tokens are stored only as keyed hashes, like API keys."""

    class Registered(Aggregate.Created):
        name: PersonalData  # an operator's name may be a person's: sealed
        actor: str
        request_id: str

    class TokenIssued(Aggregate.Event):
        token_id: UUID
        prefix: str
        secret_hash: str
        actor: str
        request_id: str

    class TokenRevoked(Aggregate.Event):
        token_id: UUID
        actor: str
        request_id: str

    @staticmethod
    def create_id(name: str, **_: Any) -> UUID:
        """One operator per name."""
        return uuid5(NAMESPACE, f"operator:{name}")

    @event(Registered)
    def __init__(self, name: PersonalData, actor: str, request_id: str) -> None:
        self.tokens: dict[UUID, bool] = {}  # token id -> revoked

    def issue_token(self, prefix: str, secret_hash: str, actor: str, request_id: str) -> UUID:
        """Record a new token (its id follows from its hash)."""
        token_id = uuid5(NAMESPACE, f"operator-token:{secret_hash}")
        self._token_issued(
            token_id=token_id, prefix=prefix, secret_hash=secret_hash, actor=actor, request_id=request_id
        )
        return token_id

    def revoke_token(self, token_id: UUID, actor: str, request_id: str) -> None:
        """Stop a token working."""
        if token_id not in self.tokens:
            raise NotFound("operator token not found")
        if self.tokens[token_id]:
            raise InvalidState("operator token is already revoked")
        self._token_revoked(token_id=token_id, actor=actor, request_id=request_id)

    @event(TokenIssued)
    def _token_issued(self, token_id: UUID, prefix: str, secret_hash: str, actor: str, request_id: str) -> None:
        self.tokens[token_id] = False

    @event(TokenRevoked)
    def _token_revoked(self, token_id: UUID, actor: str, request_id: str) -> None:
        self.tokens[token_id] = True
