"""OpenAI-shaped errors: the exception the proxy raises and the handlers that render it.

Messages never include request content: they name fields and limits, not values.
"""

from __future__ import annotations

import logging
import re
import traceback

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

log = logging.getLogger(__name__)

_JSON = "application/json"


class ErrorBody(msgspec.Struct):
    """OpenAI's ``error`` object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct):
    """``{"error": {...}}``."""

    error: ErrorBody


class OpenAIError(Exception):
    """An error the client sees as OpenAI would send it."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(message=message, type=type_, param=param, code=code)
        self.headers = headers or {}

    def encode(self) -> bytes:
        """The JSON body."""
        return msgspec.json.encode(ErrorEnvelope(self.body))


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    """400 ``invalid_request_error``."""
    return OpenAIError(400, "invalid_request_error", message, param=param, code=code)


def unsupported(param: str, what: str) -> OpenAIError:
    """400 for a parameter value this server does not implement."""
    return invalid_request(f"{what} is not supported by this server.", param=param, code="unsupported_value")


def authentication(message: str, code: str = "invalid_api_key") -> OpenAIError:
    """401 ``authentication_error``."""
    return OpenAIError(401, "authentication_error", message, code=code)


def permission(message: str, code: str | None = None) -> OpenAIError:
    """403 ``permission_error``."""
    return OpenAIError(403, "permission_error", message, code=code)


def model_not_found(model: str) -> OpenAIError:
    """404 for a model none of the organization's agents serves."""
    return OpenAIError(
        404,
        "invalid_request_error",
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def rate_limited(message: str, retry_after: str, code: str = "rate_limit_exceeded") -> OpenAIError:
    """429 ``rate_limit_error`` with ``Retry-After``."""
    return OpenAIError(429, "rate_limit_error", message, code=code, headers={"Retry-After": retry_after})


def no_agent(message: str) -> OpenAIError:
    """503: nothing can serve the request now."""
    return OpenAIError(503, "service_unavailable_error", message, code="no_agent_available")


def agent_timeout(message: str) -> OpenAIError:
    """504: the agent did not answer in time."""
    return OpenAIError(504, "timeout_error", message, code="agent_timeout")


def server_error(message: str = "The server had an error while processing your request.") -> OpenAIError:
    """500: a bug on our side, never bad input."""
    return OpenAIError(500, "server_error", message, code="internal_error")


_PATH = re.compile(r"at `\$\.?([^`]*)`")


def from_validation(exc: msgspec.ValidationError | msgspec.DecodeError) -> OpenAIError:
    """A 400 naming the offending field from msgspec's ``$.field[0].x`` path (values are never echoed)."""
    text = str(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return invalid_request(
            "We could not parse the JSON body of your request. Expected a JSON object.", code="invalid_json"
        )
    match = _PATH.search(text)
    param = match.group(1) if match and match.group(1) else None
    reason = _PATH.sub("", text).strip(" -")
    if reason.startswith("Object contains unknown field"):
        name = reason.split("`")[1] if "`" in reason else None
        param = f"{param}.{name}" if param and name else name
        return invalid_request(f"Unrecognized request argument supplied: {name}", param=param)
    if reason.startswith("Object missing required field"):
        name = reason.split("`")[1] if "`" in reason else None
        param = f"{param}.{name}" if param and name else name
        return invalid_request(f"Missing required parameter: '{param}'.", param=param)
    where = f" for '{param}'" if param else ""
    return invalid_request(f"Invalid value{where}: {reason}.", param=param, code="invalid_value")


_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def render(exc: OpenAIError) -> Response[bytes]:
    """The HTTP response for an :class:`OpenAIError`."""
    return Response(exc.encode(), status_code=exc.status, media_type=_JSON, headers=exc.headers)


def handle_openai_error(_: Request, exc: OpenAIError) -> Response[bytes]:
    """Exception handler: render as is."""
    return render(exc)


def handle_http_exception(_: Request, exc: HTTPException) -> Response[bytes]:
    """Exception handler: Litestar's own errors (413 body too large, 405, ...) in OpenAI's shape."""
    status = exc.status_code
    if status == 413:
        message = "Request body too large."
        code: str | None = "request_too_large"
    else:
        message = str(exc.detail) if status < 500 else "The server had an error while processing your request."
        code = None
    type_ = _STATUS_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return render(OpenAIError(status, type_, message, code=code, headers=dict(exc.headers or {})))


def handle_unexpected(_: Request, exc: Exception) -> Response[bytes]:
    """Exception handler: a bug. Logged by class and place only (its message might quote content)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename}:{frame.lineno}" if frame else "?"
    log.error("unexpected %s in the inference proxy at %s", type(exc).__name__, where)
    return render(server_error())


EXCEPTION_HANDLERS = {
    OpenAIError: handle_openai_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
