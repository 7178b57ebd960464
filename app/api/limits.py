"""Refuse request bodies over ``MVCT_GUIDE_MAX_UPLOAD_MB`` with 413, before and while reading.

A declared Content-Length over the limit is refused at once; a body that grows past it while
streaming stops being read, and whatever answer the application was about to give is replaced by
the 413.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLargeError(Exception):
    pass


class UploadLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _send_json(send, 400, "the Content-Length header is not a number")
            return
        if declared is not None and declared > self.max_bytes:
            await _send_json(send, 413, self._message())
            return
        state: dict[str, Any] = {"received": 0, "exceeded": False, "replaced": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["exceeded"] = True
                    raise _TooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            if state["replaced"]:
                return
            if state["exceeded"] and message["type"] == "http.response.start":
                state["replaced"] = True
                await _send_json(send, 413, self._message())
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLargeError:
            if not state["replaced"]:
                state["replaced"] = True
                await _send_json(send, 413, self._message())

    def _message(self) -> str:
        mb = self.max_bytes / (1024 * 1024)
        return (
            f"the upload is larger than {mb:g} MB (MVCT_GUIDE_MAX_UPLOAD_MB); send only the "
            "series' files, as a .zip, or ask the physicist to raise the limit"
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
