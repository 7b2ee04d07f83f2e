"""Keyset pagination for list endpoints: ``?limit=&after=``, the next page named in a ``Link`` header.

Listings are oldest first and nothing is ever dropped from them (removed users, revoked keys stay
with their status), so the id of the last row seen is a stable cursor: a page never repeats or
skips a row, however many are added while a client walks the list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol, TypeVar
from urllib.parse import urlencode
from uuid import UUID

from litestar import Request, Response, get
from litestar.datastructures import ResponseHeader
from litestar.params import QueryParameter

from domain.errors import InvalidValue
from domain.permissions import Action

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

Limit = Annotated[
    int,
    QueryParameter(ge=1, le=MAX_LIMIT, description=f"Rows per page (1 to {MAX_LIMIT})."),
]
After = Annotated[
    UUID | None,
    QueryParameter(description="Id of the last row of the previous page; omit for the first page."),
]

PAGE_HEADERS = [
    ResponseHeader(
        name="Link",
        description='`<url>; rel="next"` when more rows follow; absent on the last page.',
        documentation_only=True,
        required=False,
    ),
    ResponseHeader(name="X-Total-Count", description="Rows in the whole listing.", documentation_only=True),
]


class Identified(Protocol):
    """A read-model row: anything with an id."""

    @property
    def id(self) -> UUID: ...


Row = TypeVar("Row", bound=Identified)
Out = TypeVar("Out")


def paginate(
    request: Request[Any, Any, Any],
    rows: Sequence[Row],
    render: Callable[[Row], Out],
    limit: int,
    after: UUID | None,
) -> Response[list[Out]]:
    """One rendered page of ``rows`` after the row ``after``, with ``Link`` and ``X-Total-Count``."""
    start = _start_after(rows, after)
    page = rows[start : start + limit]
    headers = {"X-Total-Count": str(len(rows))}
    if start + limit < len(rows):
        headers["Link"] = f'<{_next_url(request, limit, page[-1].id)}>; rel="next"'
    return Response([render(row) for row in page], headers=headers)


def _start_after(rows: Sequence[Identified], after: UUID | None) -> int:
    """The index just past the cursor row; an id not in this listing is refused, naming ``after``."""
    if after is None:
        return 0
    for index, row in enumerate(rows):
        if row.id == after:
            return index + 1
    raise InvalidValue("`after` is not the id of a row in this listing", field="after")


def _next_url(request: Request[Any, Any, Any], limit: int, last: UUID) -> str:
    """The request's own URL with the cursor moved to ``last`` (other query parameters kept)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("after", "limit")]
    query += [("limit", str(limit)), ("after", str(last))]
    return str(request.url.with_replacements(query=urlencode(query)))


def listing(operation_id: str, action: Action) -> Any:
    """The route decorator of a paged listing: ``GET /`` guarded by ``action``, paging headers documented."""
    return get(
        "/", operation_id=operation_id, opt={"action": action}, response_headers=PAGE_HEADERS, sync_to_thread=False
    )
