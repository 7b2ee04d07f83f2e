"""Request bodies of the JSON endpoints: declared as JSON, and never a 500 however they are built.

Litestar decodes a handler's ``data`` as JSON whatever the ``Content-Type`` says, so a form, XML or
``text/plain`` body that happens to hold JSON was served. A body declared as anything but JSON is
refused (415 on ``/api/v1``; the proxy answers OpenAI's 400). A request without a ``Content-Type``
is still read as JSON: it declares nothing else. msgspec raises ``RecursionError`` (not a
``DecodeError``) on deeply nested JSON such as a mebibyte of ``[``: that is malformed input, a 400.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException, ValidationException

TOO_DEEP = "Malformed JSON body: nested too deeply"
NOT_JSON = "the body must be JSON, sent with 'Content-Type: application/json'"


def declares_json(content_type: str | None) -> bool:
    """True for ``application/json`` or ``application/<x>+json`` (any parameters), or no Content-Type."""
    if content_type is None or not content_type.strip():
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonBodyRequest(Request[Any, Any, Any]):
    """The app's request: its JSON body must be declared as JSON, and deep nesting is a 400."""

    async def json(self) -> Any:
        """The decoded body; 415 for a body declared as something else, 400 when nested too deeply."""
        if not declares_json(self.headers.get("content-type")):
            raise HTTPException(status_code=415, detail=NOT_JSON)
        try:
            return await super().json()
        except RecursionError:
            raise ValidationException(detail=TOO_DEEP) from None
