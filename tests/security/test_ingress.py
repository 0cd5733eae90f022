"""Attacks on the OpenAI-compatible ingress (the routes every Ray replica serves).

The routes run in this process on a plain FastAPI app holding the real SmolLM2-135M (the
Ray replica calls the very same functions): in-process through Starlette's test client,
and, where a client must really go away, through uvicorn on 127.0.0.1. Each test asserts
what the operator needs: no key, no answer; a huge or hostile request is refused before it
costs memory or time; a request that runs too long or whose client left stops generating.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi", reason="the ingress needs the 'ray' extra (FastAPI)")

from fastapi.testclient import TestClient

from langchain_setraf.models import default_gguf_path
from langchain_setraf.schema_limits import SchemaTooComplexError, check_schema
from langchain_setraf.serve import openai_routes
from langchain_setraf.serve.ingress_policy import IngressPolicy
from langchain_setraf.serve.openai_routes import (
    REQUEST_ID_HEADER,
    ModelService,
    ReplicaInfo,
    standalone_app,
)
from langchain_setraf.serve.ray_config import RayServeConfigError, load_config

KEY = "k3y-for-the-ingress-tests-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
LOAD = {"n_threads": 1, "n_ctx": 4096, "temperature": 0, "max_tokens": 24, "seed": 0}
#: A schema that forces a long answer (at least 3,000 characters): a generation that runs
#: for tens of seconds unless it is stopped.
LONG = {
    "type": "json_schema",
    "json_schema": {
        "name": "long",
        "schema": {
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 3000}},
            "required": ["text"],
        },
    },
}
#: Attack 7 of issue 21: 281 bytes that made a replica grow to 3.4 GB and answer 500.
HOSTILE = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "List the layers."}],
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "layers",
            "schema": {
                "type": "object",
                "properties": {
                    "layers": {"type": "array", "items": {"type": "string"}, "minItems": 1e8}
                },
                "required": ["layers"],
            },
        },
    },
}


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def base_service() -> Iterator[ModelService]:
    """The real model, loaded once (the services below share its chat/LLM pair)."""
    from langchain_setraf.serve.ray_app import build_service
    from langchain_setraf.serve.ray_config import ModelConfig

    service: ModelService = build_service(
        ModelConfig(load=LOAD, name="smollm2"), "sec-test", policy=IngressPolicy.with_key(KEY)
    )
    yield service
    service.chat.release()


def _service(base: ModelService, **policy: Any) -> ModelService:
    """The same loaded model behind another policy."""
    return ModelService(
        base.chat,
        base.llm,
        base.model_name,
        ReplicaInfo("sec-test"),
        base.details,
        IngressPolicy.with_key(KEY, **policy),
    )


@pytest.fixture(scope="module")
def client(base_service: ModelService) -> Iterator[TestClient]:
    with TestClient(standalone_app(base_service)) as c:
        yield c


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], **extra}


# -- authentication -------------------------------------------------------------------------------
@pytest.mark.slow
def test_no_key_or_wrong_key_gets_401_on_every_route(client: TestClient) -> None:
    calls: list[tuple[str, str, Any]] = [
        ("post", "/v1/chat/completions", _chat()),
        ("post", "/v1/completions", {"prompt": "Clay is", "max_tokens": 2}),
        ("get", "/v1/models", None),
        ("post", "/tokenize", {"content": "clay"}),
        ("post", "/apply-template", {"messages": [{"role": "user", "content": "x"}]}),
    ]
    wrong_same_length = KEY[:-1] + ("x" if KEY[-1] != "x" else "y")
    for headers in ({}, {"Authorization": f"Bearer {wrong_same_length}"}, {"Authorization": KEY}):
        for method, path, body in calls:
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            err = r.json()["error"]
            assert err["code"] == "invalid_api_key" and err["type"] == "authentication_error"
            assert "Bearer" in err["message"] and r.headers["www-authenticate"] == "Bearer"
            assert KEY not in r.text
    # the right key opens every route; /health needs none (load balancers probe it)
    for method, path, body in calls:
        r = client.request(method, path, json=body, headers=AUTH)
        assert r.status_code == 200, (path, r.text)
    assert client.get("/health").json()["status"] == "ok"


def test_policy_keeps_only_the_digest() -> None:
    policy = IngressPolicy.with_key(KEY)
    assert KEY not in repr(policy) and policy.api_key_sha256 is not None
    with pytest.raises(ValueError, match="64 lowercase hex"):
        IngressPolicy(api_key_sha256=KEY)


# -- the config: no key, no public bind -----------------------------------------------------------
def test_public_bind_without_key_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "public.yaml"
    path.write_text("http:\n  host: 0.0.0.0\n  port: 8000\n")
    with pytest.raises(RayServeConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "http.api_key_env" in msg and "0.0.0.0" in msg
    for host in ("127.0.0.1", "::1", "localhost"):
        path.write_text(f"http:\n  host: '{host}'\n")
        assert load_config(path).http.api_key_env is None


def test_key_variable_unset_or_short_refused_before_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_setraf.serve.ray_app import serve_ray

    path = tmp_path / "keyed.yaml"
    path.write_text("http:\n  host: 0.0.0.0\n  api_key_env: SETRAF_TEST_INGRESS_KEY\n")
    monkeypatch.delenv("SETRAF_TEST_INGRESS_KEY", raising=False)
    # no cluster runs here: a refusal after touching Ray would fail with another error
    with pytest.raises(RayServeConfigError, match=r"keyed\.yaml.*SETRAF_TEST_INGRESS_KEY.*not set"):
        serve_ray(path, block=False)
    monkeypatch.setenv("SETRAF_TEST_INGRESS_KEY", "short")
    with pytest.raises(RayServeConfigError, match="at least 16 characters"):
        serve_ray(path, block=False)
    monkeypatch.setenv("SETRAF_TEST_INGRESS_KEY", KEY)
    policy = load_config(path).http.policy()
    assert policy.api_key_sha256 is not None and policy.max_body_bytes == 1 << 20


# -- body size ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_body_over_the_limit_gets_413_declared_or_not(base_service: ModelService) -> None:
    small = _service(base_service, max_body_bytes=4096)
    with TestClient(standalone_app(small)) as c:
        big = json.dumps(_chat(messages=[{"role": "user", "content": "x" * 8000}])).encode()
        r = c.post("/v1/chat/completions", content=big, headers=AUTH)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "request_too_large" and "4096" in r.text

        r = c.post("/v1/chat/completions", content=b"{}", headers={**AUTH, "Content-Length": "1e9"})
        assert r.status_code == 400 and "Content-Length" in r.text
        r = c.post("/v1/chat/completions", json=_chat(max_tokens=2), headers=AUTH)
        assert r.status_code == 200, r.text


@pytest.mark.slow
def test_chunked_body_over_the_limit_is_refused_before_it_ends(base_service: ModelService) -> None:
    """No Content-Length (chunked transfer): the server answers 413 once the limit is
    passed, while the client has not finished (and never will finish) sending."""
    small = _service(base_service, max_body_bytes=4096)
    with _uvicorn(small) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {KEY}\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 1000
        for _ in range(5):  # 5,000 bytes of an endless body
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = s.recv(65536)  # a server waiting for the end would time out here
            assert data, "connection closed without an answer"
            answer += data
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.slow
def test_malformed_bodies_are_400_not_500(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", content=b"[" * 200_000, headers=AUTH)
    assert r.status_code == 400 and "nested too deeply" in r.text, r.text
    odd_tool = [{"type": "function", "function": "not an object"}]
    r = client.post("/v1/chat/completions", json=_chat(tools=odd_tool), headers=AUTH)
    assert r.status_code == 400, r.text


# -- hostile schemas ------------------------------------------------------------------------------
@pytest.mark.slow
def test_attack_7_min_items_1e8_is_a_400_that_costs_nothing(client: TestClient) -> None:
    raw = json.dumps(HOSTILE, separators=(",", ":"))
    assert len(raw) < 300  # the attack's size: a few hundred bytes
    rss0 = _rss_bytes()
    r = client.post("/v1/chat/completions", content=raw, headers=AUTH)
    grown = _rss_bytes() - rss0
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "response_format"
    assert "minItems" in err["message"] and "4096" in err["message"]
    assert "#/properties/layers" in err["message"]
    assert grown < 64 << 20, f"the refused request grew the process by {grown >> 20} MiB"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "schema", "needle"),
    [
        ("tools", {"type": "object", "properties": {"a": {"maxLength": 10**9}}}, "maxLength"),
        ("tools", {"$ref": "https://attacker.example/s.json"}, "not a local reference"),
        ("response_format", {"$defs": {"a": {"items": {"$ref": "#/$defs/a"}}}}, "cycle"),
        ("response_format", {"type": "string", "pattern": "(a{100}){100}"}, "pattern repeat"),
        ("response_format", {"enum": list(range(5000))}, "enum has 5000"),
    ],
)
def test_hostile_schemas_are_400_naming_the_keyword(
    client: TestClient, where: str, schema: dict[str, Any], needle: str
) -> None:
    if where == "tools":
        tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
        body = _chat(tools=[tool], tool_choice="required")
    else:
        body = _chat(response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    r = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"] and r.json()["error"]["param"] == where


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


def _laughs(levels: int) -> dict[str, Any]:
    """Each definition uses the next twice: 2**levels subschemas once expanded."""
    defs: dict[str, Any] = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "array", "minItems": True}, "non-negative integer"),
        ({"type": "string", "maxLength": float("inf")}, "maxLength=inf"),
        ({"$ref": "#"}, "$ref cycle # -> #"),
        ({"$ref": "#/$defs/none"}, "does not name a subschema"),
        ({"properties": {str(i): {} for i in range(300)}}, "properties has 300"),
        ({"type": "string", "pattern": "(" * 5000}, "at most 1000 characters"),
        (_nested(40), "nested deeper than 32"),
        (_laughs(30), "more than 4096 subschemas"),
    ],
)
def test_schema_limits_refuse(schema: dict[str, Any], needle: str) -> None:
    with pytest.raises(SchemaTooComplexError) as err:
        check_schema(schema, what="response_format")
    assert needle in str(err.value) and str(err.value).startswith("response_format refused")


def test_schema_limits_accept_real_schemas() -> None:
    from langchain_setraf.ert.chains import Interpretation

    check_schema(Interpretation.model_json_schema())
    check_schema(
        {
            "$defs": {"layer": {"type": "object", "properties": {"ohm_m": {"type": "number"}}}},
            "type": "object",
            "properties": {
                "site": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3,6}$", "maxLength": 64},
                "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}, "maxItems": 50},
                "a": {"$ref": "#/$defs/layer"},
            },
        }
    )
    check_schema(True)


@pytest.mark.slow
def test_in_process_models_refuse_the_same_schema(base_service: ModelService) -> None:
    """``with_structured_output`` / ``json_schema`` without the ingress: same refusal,
    before any grammar is built."""
    from langchain_setraf import GGUFLLM, ChatGGUF

    schema = {**HOSTILE["response_format"]["json_schema"]["schema"], "title": "Layers"}
    chat = ChatGGUF(model_path=str(default_gguf_path()), **LOAD)
    rss0 = _rss_bytes()
    with pytest.raises(SchemaTooComplexError, match="minItems"):
        chat.with_structured_output(schema).invoke("List the layers.")
    with pytest.raises(SchemaTooComplexError, match=r"tool-call schema refused.*minItems"):
        chat.with_structured_output(schema, method="function_calling").invoke("Layers?")
    llm = GGUFLLM(model_path=str(default_gguf_path()), **LOAD)
    with pytest.raises(SchemaTooComplexError, match=r"json_schema refused.*minItems"):
        llm.invoke("Layers:", json_schema=schema)
    assert _rss_bytes() - rss0 < 64 << 20


# -- timeouts and clients that leave --------------------------------------------------------------
@pytest.mark.slow
def test_request_timeout_is_a_504_and_stops_the_generation(base_service: ModelService) -> None:
    quick = _service(base_service, request_timeout_s=2.0)
    body = _chat(response_format=LONG, max_tokens=3000)
    with TestClient(standalone_app(quick)) as c:
        r = c.post("/v1/chat/completions", json=body, headers=AUTH)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "timeout" and "2 s" in r.json()["error"]["message"]
        assert quick.inflight == 0  # the answer comes once the generation has stopped

        r = c.post("/v1/chat/completions", json={**body, "stream": True}, headers=AUTH)
        events = [ln for ln in r.text.splitlines() if ln.startswith("data: ")]
        assert "data: [DONE]" not in events
        if r.status_code == 200:  # tokens came first: the timeout is told in-band
            assert json.loads(events[-1][6:])["error"]["code"] == "timeout", events[-1]
        else:
            assert r.status_code == 504, r.text
    _wait(lambda: quick.inflight == 0, 30, "the streamed generation to stop")


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _uvicorn(service: ModelService) -> Iterator[int]:
    """The app on a real HTTP server on 127.0.0.1 (a thread of this process)."""
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(
        standalone_app(service), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ingress-test-server", daemon=True)
    thread.start()
    try:
        _wait(lambda: server.started, 30, "uvicorn to start")
        yield port
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.mark.slow
def test_client_that_leaves_frees_the_slot(base_service: ModelService) -> None:
    """A client that disconnects mid-generation (streamed, or waiting for a plain
    answer) stops the generation: the slot is free long before the forced 3,000-character
    answer could have been written."""
    service = _service(base_service)
    body = json.dumps(_chat(response_format=LONG, max_tokens=3000)).encode()
    with _uvicorn(service) as port:
        # streamed: read the first event, then hang up
        with (
            httpx.Client(timeout=60) as c,
            c.stream(
                "POST",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                content=json.dumps({**json.loads(body), "stream": True}),
                headers={**AUTH, "Content-Type": "application/json"},
            ) as r,
        ):
            assert r.status_code == 200
            lines = r.iter_lines()  # kept: dropping it closes the connection (httpcore)
            next(lines)
            assert service.inflight == 1
        freed = _wait(lambda: service.inflight == 0, 10, "the streamed generation to stop")
        print(f"\n[ingress] stream: slot free {freed:.2f} s after the client left")

        # plain request: the client waits for the JSON answer, then leaves
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
            _wait(lambda: service.inflight == 1, 30, "the generation to start")
            time.sleep(0.5)
        freed = _wait(lambda: service.inflight == 0, 10, "the plain generation to stop")
        print(f"[ingress] plain: slot free {freed:.2f} s after the client left")


# -- what errors and listings show ----------------------------------------------------------------
class _Exploding:
    """Isolates the error path: a chat model whose call fails with a path in its text."""

    async def ainvoke(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("cannot open /home/victim/models/secret.gguf: I/O error")


def test_server_error_carries_a_request_id_not_the_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = ModelService(_Exploding(), None, "smollm2", ReplicaInfo("sec-test"))
    with caplog.at_level(logging.ERROR, logger=openai_routes.__name__):
        r = TestClient(standalone_app(service)).post("/v1/chat/completions", json=_chat())
    assert r.status_code == 500
    assert "/home/victim" not in r.text and "RuntimeError" not in r.text
    rid = r.headers[REQUEST_ID_HEADER]
    assert rid in r.json()["error"]["message"] and r.json()["setraf"]["request_id"] == rid
    logged = [rec for rec in caplog.records if rid in rec.getMessage()]
    assert logged and logged[0].exc_info is not None  # the operator has the details
    assert "/home/victim" in str(logged[0].exc_info[1])


@pytest.mark.slow
def test_models_listing_shows_no_path(client: TestClient) -> None:
    r = client.get("/v1/models", headers=AUTH)
    assert r.status_code == 200
    path = default_gguf_path()
    assert str(path) not in r.text and str(path.parent) not in r.text
    entry = r.json()["data"][0]
    assert entry["id"] == "smollm2"

    def strings(obj: Any) -> Iterator[str]:
        if isinstance(obj, dict):
            for v in obj.values():
                yield from strings(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from strings(v)
        elif isinstance(obj, str):
            yield obj

    assert not [s for s in strings(r.json()) if s.startswith("/")]


def test_wedged_replica_fails_its_health_check(monkeypatch: pytest.MonkeyPatch) -> None:
    service = ModelService(
        _Exploding(),
        None,
        "smollm2",
        ReplicaInfo("sec-test"),
        policy=IngressPolicy(request_timeout_s=0.01),
    )
    monkeypatch.setattr(openai_routes, "WEDGE_GRACE_S", 0.0)
    c = TestClient(standalone_app(service))
    assert c.get("/health").status_code == 200
    slot = service.begin()  # a generation that never ends
    time.sleep(0.05)
    r = c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "wedged", r.text
    service.end(slot)
    assert c.get("/health").status_code == 200
