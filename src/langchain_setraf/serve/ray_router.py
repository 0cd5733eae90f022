"""The Ray ingress's router: check a request, send it to a model replica, retry on a dead one.

Ray Serve's own proxy retries a request only until a replica accepts it; a replica that
dies while running it (killed, out of memory, its node lost) gives the client a 500. The
router sits between the proxy and the model replicas and calls them through a deployment
handle, so it sees the failure and can send the request again, to another replica:

- **before the first byte** (the replica died before its response began: for a plain
  request, before the answer was complete; for a stream, before its first event), the
  request is retried up to ``retries`` times on the replicas Ray still routes to, with a
  short back-off. A generation has no side effect, so running it again is safe. The
  response says how many attempts it took (header ``x-setraf-attempts``).
- **after the first byte** nothing can be retried: a stream ends with an in-band
  ``server_error`` event naming the request id (no ``[DONE]``); a plain body is cut.

The router applies the ingress policy's API key (401) and body limit (413) before any
replica is involved; the replicas apply the same policy again and the schema bounds and
timeout of :mod:`langchain_setraf.serve.openai_routes`. When the client goes away, the
call to the replica is cancelled, which cancels its generation.

The class here is plain Python over an abstract ``call`` (a function returning the
replica's response stream), so it runs without Ray in unit tests;
:mod:`langchain_setraf.serve.ray_app` wires it to a deployment handle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from langchain_setraf.serve.asgi_bridge import ForwardedRequest, ResponseHead
from langchain_setraf.serve.ingress_policy import IngressPolicy, RequestError

__all__ = [
    "ATTEMPTS_HEADER",
    "DEFAULT_RETRIES",
    "ReplicaStream",
    "Router",
    "dead_replica_errors",
]

log = logging.getLogger(__name__)

#: Response header: how many replicas were tried (1 when the first one answered).
ATTEMPTS_HEADER = "x-setraf-attempts"
#: Extra attempts after a replica died before the first byte.
DEFAULT_RETRIES = 2
#: Seconds waited before attempt ``n + 1`` is ``BACKOFF_S * n`` (Ray marks the dead
#: replica meanwhile, so the retry goes to a live one).
BACKOFF_S = 0.5
#: Seconds past the policy's request timeout after which the router stops waiting for a
#: replica that neither answers nor dies (its health check fails it meanwhile).
ROUTER_GRACE_S = 30.0
_REQUEST_ID_HEADER = "x-request-id"
#: Request headers not forwarded to a replica (hop-by-hop; the body is sent whole).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
)

ReplicaStream = AsyncIterator[ResponseHead | bytes]


def dead_replica_errors() -> tuple[type[BaseException], ...]:
    """The exceptions by which a Ray handle says its replica (or its node) died."""
    from ray.exceptions import NodeDiedError, RayActorError, WorkerCrashedError
    from ray.serve.exceptions import ReplicaUnavailableError

    return (RayActorError, WorkerCrashedError, NodeDiedError, ReplicaUnavailableError)


def _error(status: int, kind: str, message: str, rid: str, code: str | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    headers = {_REQUEST_ID_HEADER: rid}
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def _request_error(exc: RequestError, rid: str) -> Response:
    kind = "authentication_error" if exc.status == 401 else "invalid_request_error"
    return _error(exc.status, kind, str(exc), rid, exc.code)


class Router:
    """Forward requests to model replicas; retry those whose replica died before answering.

    Args:
        call: Starts one attempt: sends the request to a replica, returns its response
            stream (a :class:`~langchain_setraf.serve.asgi_bridge.ResponseHead`, then
            ``bytes``). Its iterator may have a ``cancel()`` (Ray's response generator
            has); it is called when the client goes away.
        policy: The ingress policy (API key, body limit, timeout).
        retries: Extra attempts after a replica died before the first byte.
        retryable: The exceptions meaning "the replica died" (default:
            :func:`dead_replica_errors`).
        backoff_s: Seconds times the attempt number waited before a retry.
    """

    def __init__(
        self,
        call: Callable[[ForwardedRequest], ReplicaStream],
        policy: IngressPolicy,
        *,
        retries: int = DEFAULT_RETRIES,
        retryable: tuple[type[BaseException], ...] | None = None,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.call = call
        self.policy = policy
        self.retries = retries
        self.retryable = dead_replica_errors() if retryable is None else retryable
        self.backoff_s = backoff_s

    def _first_item_timeout(self) -> float | None:
        t = self.policy.request_timeout_s
        return None if t is None else t + ROUTER_GRACE_S

    async def forward(self, request: Request, path: str) -> Response:
        """Check ``request``, send it to a replica (again, if one dies before answering),
        and relay the answer."""
        rid = request.headers.get(_REQUEST_ID_HEADER) or uuid.uuid4().hex[:16]
        try:
            if path != "/health":  # the replica's /health is public, as llama.cpp's
                self.policy.authorize(request)
            body = await self.policy.read_body(request)
        except RequestError as exc:
            return _request_error(exc, rid)
        kept = [
            (k, v)
            for k, v in request.headers.items()
            if k not in _HOP_BY_HOP and k != "content-length"
        ]
        forwarded = ForwardedRequest(
            method=request.method,
            path=path,
            query=request.url.query,
            headers=(*kept, ("content-length", str(len(body)))),
            body=body,
            client=request.client.host if request.client else "",
        )
        last: BaseException | None = None
        for attempt in range(1, self.retries + 2):
            stream = self.call(forwarded)
            try:
                first = await asyncio.wait_for(anext(stream), self._first_item_timeout())
            except self.retryable as exc:
                last = exc
                log.warning(
                    "request %s: replica died before answering (attempt %d of %d): %s",
                    rid, attempt, self.retries + 1, type(exc).__name__,
                )  # fmt: skip
                if attempt <= self.retries:
                    await asyncio.sleep(self.backoff_s * attempt)
                continue
            except TimeoutError:
                _cancel(stream)
                return _error(
                    504, "timeout", "no replica answered within the request timeout", rid,
                    "timeout",
                )  # fmt: skip
            except asyncio.CancelledError:  # the client went away: stop the replica's work
                _cancel(stream)
                raise
            except StopAsyncIteration:
                log.error("request %s: the replica sent no response", rid)
                return _error(500, "server_error", f"internal error (request id {rid})", rid)
            except Exception as exc:
                log.error("request %s failed", rid, exc_info=exc)
                return _error(500, "server_error", f"internal error (request id {rid})", rid)
            if not isinstance(first, ResponseHead):
                _cancel(stream)
                log.error("request %s: the replica's stream began with %r", rid, type(first))
                return _error(500, "server_error", f"internal error (request id {rid})", rid)
            return self._relay(first, stream, attempt, rid)
        return _error(
            503,
            "server_error",
            f"no replica could answer: {self.retries + 1} attempts, each replica died before "
            f"its answer began (last: {type(last).__name__}; request id {rid})",
            rid,
            "replica_unavailable",
        )

    def _relay(
        self, head: ResponseHead, stream: ReplicaStream, attempts: int, rid: str
    ) -> Response:
        headers = [(k, v) for k, v in head.headers]
        headers.append((ATTEMPTS_HEADER, str(attempts)))
        is_sse = any(
            k.lower() == "content-type" and v.startswith("text/event-stream") for k, v in headers
        )
        retryable = self.retryable

        async def body() -> AsyncIterator[bytes]:
            finished = False
            try:
                async for chunk in stream:
                    if isinstance(chunk, bytes):
                        yield chunk
                finished = True
            except retryable as exc:  # after the first byte: say so, in-band for a stream
                log.warning("request %s: replica died mid-answer: %s", rid, type(exc).__name__)
                if not is_sse:
                    raise
                event = {
                    "error": {
                        "message": "the replica died while answering; the answer is "
                        f"incomplete (request id {rid})",
                        "type": "server_error",
                        "param": None,
                        "code": "replica_died",
                    }
                }
                yield f"data: {json.dumps(event)}\n\n".encode()
                finished = True
            finally:
                if not finished:  # the client left, or the relay failed: stop the replica
                    _cancel(stream)

        response = StreamingResponse(body(), status_code=head.status)
        response.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in headers
            if k.lower() not in ("transfer-encoding", "connection")
        ]
        return response


def _cancel(stream: Any) -> None:
    cancel = getattr(stream, "cancel", None)
    if callable(cancel):
        cancel()
