"""One problem shape for every ``/api`` error (RFC 9457 style), mapped from domain errors in one place."""

from __future__ import annotations

import logging
import re
from typing import Any

import stripe
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from api.auth import CredentialsRejected
from domain import errors

log = logging.getLogger(__name__)
PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://ownllm.dev/problems/"

_STATUS_BY_ERROR: list[tuple[type[Exception], int]] = [
    (errors.NotFound, 404),
    (errors.PermissionDenied, 403),
    (errors.Expired, 410),
    (errors.InvalidValue, 422),
    (errors.Conflict, 409),
    (errors.DomainError, 400),
]


def problem(status: int, title: str, detail: str, kind: str, **extra: Any) -> Response[dict[str, Any]]:
    """The one error body of the management API."""
    body = {"type": TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def domain_error(_: Request[Any, Any, Any], exc: errors.DomainError) -> Response[dict[str, Any]]:
    """A refused command: status by error family, its message as detail, the field if known."""
    status = next(code for cls, code in _STATUS_BY_ERROR if isinstance(exc, cls))
    kind = _kebab(type(exc).__name__)
    return problem(status, getattr(exc, "title", "Request refused"), str(exc), kind, field=getattr(exc, "field", None))


def credentials_rejected(_: Request[Any, Any, Any], exc: CredentialsRejected) -> Response[dict[str, Any]]:
    """401 or 403 for a refused key, with a WWW-Authenticate challenge on 401."""
    title = "Unauthorized" if exc.status == 401 else "Forbidden"
    response = problem(exc.status, title, exc.message, exc.code.replace("_", "-"))
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ownllm"'
    return response


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Malformed JSON is 400; a body of the wrong shape is 422 naming the offending field."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    items = [item for item in extra if isinstance(item, dict)]
    detail = "; ".join(str(item.get("message")) for item in items if item.get("message")) or str(exc.detail)
    if "malformed" in detail.lower():
        return problem(400, "Malformed request body", detail, "malformed-body")
    return problem(422, "Invalid request", detail, "invalid-request", field=_field_of(items, detail))


def _field_of(items: list[dict[str, Any]], detail: str) -> str | None:
    """The field msgspec complained about: ``unknown field `x``` or the key of the error."""
    unknown = _UNKNOWN_FIELD.search(detail)
    if unknown:
        return unknown.group(1)
    keys = [str(item["key"]) for item in items if item.get("key") and item.get("key") != "data"]
    return keys[0] if keys else None


_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """Framework errors (404 route, 405, 413 body too large, ...) in the same shape."""
    titles = {
        400: "Malformed request",
        404: "Not found",
        405: "Method not allowed",
        413: "Request body too large",
        415: "Unsupported media type",
    }
    status = exc.status_code
    response = problem(status, titles.get(status, "Request refused"), str(exc.detail), f"http-{status}")
    response.headers.update(exc.headers or {})
    return response


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A bug: logged with the request id only (never bodies), answered without internals."""
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal error", "the server failed; the error was logged", "internal")


def _kebab(name: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


def stripe_failed(_: Request[Any, Any, Any], exc: stripe.StripeError) -> Response[dict[str, Any]]:
    """Stripe declined the card (402) or could not be reached or refused the call (502); never a 500."""
    log.warning("Stripe answered %s (HTTP %s)", type(exc).__name__, exc.http_status)  # not its message: it quotes data
    if isinstance(exc, stripe.CardError):
        return problem(402, "Payment declined", "the card was declined; use another payment method", "card-declined")
    detail = "the payment provider could not be reached or refused the call; nothing was charged, try again"
    return problem(502, "Payment provider unavailable", detail, "payment-provider-unavailable")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    errors.DomainError: domain_error,
    CredentialsRejected: credentials_rejected,
    stripe.StripeError: stripe_failed,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
