"""The Ray ingress's router and the ASGI bridge, in one process (no cluster).

The replicas are stand-ins here: a small FastAPI app run through the real bridge
(:func:`run_asgi`), or a call that dies the way a Ray handle reports a dead replica. The
real cluster, with a real replica SIGKILLed under load, is in ``tests/test_ray_serve.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the ingress needs the 'ray' extra (FastAPI)")

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient

from langchain_setraf.serve.asgi_bridge import ForwardedRequest, ResponseHead, run_asgi
from langchain_setraf.serve.ingress_policy import IngressPolicy
from langchain_setraf.serve.ray_router import ATTEMPTS_HEADER, Router

KEY = "router-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Died(Exception):
    """Stands for Ray's ActorDiedError."""


def replica_app(log: list[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/echo")
    async def echo(request: Request) -> JSONResponse:
        body = await request.json()
        log.append(f"echo {request.headers.get('authorization')}")
        return JSONResponse({"got": body, "query": request.url.query}, headers={"x-r": "1"})

    @app.post("/v1/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            try:
                for i in range(1000):
                    yield f"data: {i}\n\n"
                    await asyncio.sleep(0.01)
            finally:
                log.append("stream closed")

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret /home/alice/model.gguf")

    return app


def collect(app: FastAPI, req: ForwardedRequest, stop_after: int | None = None) -> list[Any]:
    async def run() -> list[Any]:
        out: list[Any] = []
        gen = run_asgi(app, req)
        async for item in gen:
            out.append(item)
            if stop_after is not None and len(out) >= stop_after:
                await gen.aclose()
                break
        return out

    return asyncio.run(run())


def test_bridge_carries_method_path_query_headers_and_body() -> None:
    log: list[str] = []
    req = ForwardedRequest(
        "POST", "/v1/echo", "a=1", (("authorization", "Bearer x"),), b'{"k": [1, 2]}'
    )
    items = collect(replica_app(log), req)
    head, *body = items
    assert isinstance(head, ResponseHead) and head.status == 200
    assert ("x-r", "1") in head.headers
    assert json.loads(b"".join(body)) == {"got": {"k": [1, 2]}, "query": "a=1"}
    assert log == ["echo Bearer x"]


def test_bridge_closed_early_tells_the_app_the_client_left() -> None:
    log: list[str] = []
    items = collect(replica_app(log), ForwardedRequest("POST", "/v1/stream"), stop_after=3)
    assert isinstance(items[0], ResponseHead) and items[1] == b"data: 0\n\n"
    assert log == ["stream closed"]  # the generator was closed, not left running


def test_bridge_relays_the_apps_500_and_logs_its_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    items = collect(replica_app([]), ForwardedRequest("GET", "/boom"))
    assert isinstance(items[0], ResponseHead) and items[0].status == 500
    assert b"secret" not in b"".join(items[1:])
    assert any("secret" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_bridge_without_a_response_is_an_error() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(RuntimeError, match="without a response"):
        collect(silent, ForwardedRequest("GET", "/"))  # type: ignore[arg-type]


def router_client(call: Any, retries: int = 2, **policy: Any) -> TestClient:
    router = Router(
        call, IngressPolicy.with_key(KEY, **policy), retries=retries, retryable=(Died,),
        backoff_s=0.01,
    )  # fmt: skip
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request) -> Any:
        return await router.forward(request, "/" + path)

    return TestClient(app, raise_server_exceptions=False)


def dying_then(app: FastAPI, deaths: int, calls: list[int]) -> Any:
    """A call whose first ``deaths`` attempts die before any byte, then the real app."""

    def call(req: ForwardedRequest) -> AsyncIterator[Any]:
        calls.append(1)
        if len(calls) <= deaths:

            async def dead() -> AsyncIterator[Any]:
                await asyncio.sleep(0)
                raise Died("replica SIGKILLed")
                yield  # an async generator

            return dead()
        return run_asgi(app, req)

    return call


def test_a_replica_dying_before_the_first_byte_is_retried_on_another() -> None:
    calls: list[int] = []
    log: list[str] = []
    client = router_client(dying_then(replica_app(log), 2, calls))
    r = client.post("/v1/echo?a=1", json={"k": 1}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"got": {"k": 1}, "query": "a=1"}
    assert r.headers[ATTEMPTS_HEADER] == "3" and len(calls) == 3
    assert log == [f"echo Bearer {KEY}"]  # the key reached the replica that answered


def test_every_replica_dead_is_a_503_naming_the_attempts() -> None:
    calls: list[int] = []
    client = router_client(dying_then(replica_app([]), 99, calls), retries=1)
    r = client.post("/v1/echo", json={}, headers=AUTH)
    assert r.status_code == 503 and len(calls) == 2
    err = r.json()["error"]
    assert err["code"] == "replica_unavailable" and "2 attempts" in err["message"]


def test_death_after_the_first_byte_ends_a_stream_with_an_error_event() -> None:
    def call(req: ForwardedRequest) -> AsyncIterator[Any]:
        async def half() -> AsyncIterator[Any]:
            yield ResponseHead(200, (("content-type", "text/event-stream"),))
            yield b"data: 0\n\n"
            raise Died("gone mid-stream")

        return half()

    r = router_client(call).post("/v1/stream", json={}, headers=AUTH)
    assert r.status_code == 200 and r.headers[ATTEMPTS_HEADER] == "1"
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[0] == "0" and "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "replica_died"


def test_key_and_body_limit_are_checked_before_any_replica() -> None:
    calls: list[int] = []
    client = router_client(dying_then(replica_app([]), 0, calls), max_body_bytes=2048)
    assert client.post("/v1/echo", json={}).status_code == 401
    bad = {"Authorization": "Bearer " + KEY[::-1]}
    assert client.post("/v1/echo", json={}, headers=bad).status_code == 401
    assert client.post("/v1/echo", json={"x": "y" * 4000}, headers=AUTH).status_code == 413
    assert calls == []
    assert client.get("/health").status_code == 404  # public: forwarded (no such route here)
    assert calls == [1]


def test_a_replica_failure_is_a_500_with_a_request_id_and_no_text() -> None:
    def call(req: ForwardedRequest) -> AsyncIterator[Any]:
        async def fails() -> AsyncIterator[Any]:
            raise ValueError("secret /home/alice/model.gguf")  # e.g. Ray's RayTaskError
            yield

        return fails()

    r = router_client(call).get("/v1/models", headers=AUTH)
    assert r.status_code == 500
    assert "secret" not in r.text and "/home" not in r.text
    assert r.headers["x-request-id"] in r.json()["error"]["message"]
