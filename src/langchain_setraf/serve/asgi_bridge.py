"""One HTTP request carried between two processes as plain data, and an ASGI app run on it.

The Ray ingress is two deployments (:mod:`langchain_setraf.serve.ray_app`): a router
that receives HTTP from Ray's proxy, and the model replicas, which it calls through a
deployment handle. What crosses the handle is a :class:`ForwardedRequest` (method, path,
headers, body: picklable), and what comes back is a stream of items: first a
:class:`ResponseHead` (status and headers), then the body's chunks as ``bytes``.

:func:`run_asgi` runs an ASGI application (the replica's FastAPI routes) on a forwarded
request and yields that stream. When the consumer stops iterating (the router's client
went away, so Ray cancels the call), the app is told ``http.disconnect``: the routes
cancel their generation exactly as they do behind a real HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ForwardedRequest", "ResponseHead", "run_asgi"]

log = logging.getLogger(__name__)

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

#: How long an app that was told ``http.disconnect`` may take to return before it is
#: cancelled (the routes stop their generation at the next token).
DISCONNECT_GRACE_S = 5.0


@dataclass(frozen=True)
class ForwardedRequest:
    """An HTTP request as data.

    Attributes:
        method: ``GET``, ``POST``, ...
        path: The path below the application's route prefix (``/v1/chat/completions``).
        query: The raw query string (without ``?``).
        headers: Header pairs, names lower-case, in the order received.
        body: The whole body (already bounded by the router's size limit).
        client: The client's host as the router saw it (for logs only).
    """

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    client: str = ""


@dataclass(frozen=True)
class ResponseHead:
    """The first item of a response stream: status and headers."""

    status: int
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _scope(req: ForwardedRequest) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": req.method.upper(),
        "scheme": "http",
        "path": req.path,
        "raw_path": req.path.encode("latin-1"),
        "query_string": req.query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in req.headers],
        "client": (req.client or "unknown", 0),
        "server": ("127.0.0.1", 0),
    }


async def run_asgi(
    app: ASGIApp, req: ForwardedRequest
) -> AsyncGenerator[ResponseHead | bytes, None]:
    """Run ``app`` on ``req``; yield the response head, then the body chunks.

    Closing the iterator early (or cancelling the task that iterates it) tells the app
    ``http.disconnect`` and waits up to :data:`DISCONNECT_GRACE_S` for it to return.

    An exception the app raises before its response begins propagates (the router
    answers 500); one raised after it (Starlette's error middleware sends its 500, then
    re-raises) is logged.

    Raises:
        RuntimeError: the app returned without sending a response.
    """
    sent: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    gone = asyncio.Event()
    body_given = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        await sent.put(message)

    task = asyncio.ensure_future(app(_scope(req), receive, send))
    started = False
    getter: asyncio.Future[MutableMapping[str, Any]] | None = None
    try:
        while True:
            getter = asyncio.ensure_future(sent.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():  # the app returned (or failed): take what it left
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                if sent.empty():
                    task.result()  # its exception, if any
                    if not started:
                        raise RuntimeError("the application returned without a response")
                    return
                message = sent.get_nowait()
            else:
                message = getter.result()
            kind = message.get("type")
            if kind == "http.response.start":
                started = True
                headers = tuple(
                    (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                    for k, v in message.get("headers", ())
                )
                yield ResponseHead(int(message["status"]), headers)
            elif kind == "http.response.body":
                chunk = bytes(message.get("body", b""))
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return
    finally:
        if getter is not None and not getter.done():
            getter.cancel()
        gone.set()
        if not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), DISCONNECT_GRACE_S)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                pass
        if task.done() and not task.cancelled() and task.exception() is not None:
            # e.g. Starlette's error middleware sent its 500 and then re-raised: the
            # response went out; the failure belongs in the log, not lost
            log.error("the application failed", exc_info=task.exception())
