"""Request bodies of the JSON endpoints: never a 500, however they are built.

msgspec raises ``RecursionError`` (not a ``DecodeError``) on deeply nested JSON such as a mebibyte
of ``[``: that is malformed input, a 400.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import ValidationException

TOO_DEEP = "Malformed JSON body: nested too deeply"


class JsonBodyRequest(Request[Any, Any, Any]):
    """The app's request: deep nesting in its JSON body is a 400."""

    async def json(self) -> Any:
        """The decoded body; 400 when nested too deeply."""
        try:
            return await super().json()
        except RecursionError:
            raise ValidationException(detail=TOO_DEEP) from None
