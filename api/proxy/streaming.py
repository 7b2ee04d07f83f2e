"""A streamed (SSE) response that always runs a close hook, however sending ends: the job is never left running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar.response.streaming import ASGIStreamingResponse, Stream

from api.proxy.responses import SSE_HEADERS, SSE_MEDIA_TYPE


class _GuardedASGIStream(ASGIStreamingResponse):
    """Litestar's streaming response plus a synchronous close hook that always runs."""

    __slots__ = ("on_close",)

    def __init__(self, *, on_close: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_close = on_close

    async def send_body(self, send: Any, receive: Any) -> None:
        """Stream; then, however it ended, run the close hook (idempotent, never awaits)."""
        try:
            await super().send_body(send, receive)
        finally:
            self.on_close("cancelled")


class GuardedStream(Stream):
    """A :class:`Stream` whose ASGI response runs ``on_close`` when sending ends or fails."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    def to_asgi_response(  # type: ignore[override]
        self,
        app: Any,
        request: Any,
        *,
        background: Any = None,
        cookies: Any = None,
        encoded_headers: Any = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: Any = None,
        status_code: int | None = None,
        type_encoders: Any = None,
    ) -> ASGIStreamingResponse:
        """Build the guarded ASGI response (as ``Stream.to_asgi_response`` does)."""
        merged = {**headers, **self.headers} if headers is not None else self.headers
        return _GuardedASGIStream(
            on_close=self._on_close,
            background=self.background or background,
            content_length=0,
            cookies=self.cookies if cookies is None else [*self.cookies, *cookies],
            encoded_headers=encoded_headers,
            encoding=self.encoding,
            headers=merged,
            is_head_response=is_head_response,
            iterator=self.iterator,  # type: ignore[arg-type]
            media_type=self.media_type or media_type or SSE_MEDIA_TYPE,
            status_code=self.status_code or status_code,
        )


def guarded_sse(events: AsyncIterator[bytes], on_close: Any) -> Stream:
    """An SSE response of ``events``; ``on_close("cancelled")`` runs however sending ends."""
    return GuardedStream(events, on_close=on_close, status_code=200, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
