"""Ray Serve replicas behind the OpenAI-compatible routes, on a real local cluster.

The cluster is two Ray nodes on 127.0.0.1 (``ray start --head`` and ``ray start --address``,
one CPU each, 100 MB object store), serving the real SmolLM2-135M. Every request loop is
bounded in count and time; every HTTP call has a timeout, so none can hang.

Fast tests (no cluster) check the config schema and the OpenAI <-> LangChain translation on
a plain FastAPI app holding the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("ray.serve", reason="the Ray tests need the 'ray' extra")

from fastapi.testclient import TestClient

from helpers.ray_cluster import LocalCluster, free_port, local_cluster
from langchain_setraf.serve.openai_routes import REPLICA_HEADER, ModelService
from langchain_setraf.serve.ray_config import (
    ModelConfig,
    ModelIdentityError,
    RayServeConfig,
    RayServeConfigError,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]
LOAD = {"n_threads": 1, "n_ctx": 4096, "temperature": 0, "max_tokens": 24, "seed": 0}
HTTP_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


# -- config file ------------------------------------------------------------------------------------
def test_example_config_is_valid() -> None:
    cfg = load_config(REPO / "examples" / "ray_serve.yaml")
    assert cfg.model.uri
    assert cfg.deployment.to_ray_options()


def test_unknown_key_named_with_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  uri: default\n  n_ctxx: 5\ndeployment:\n  replicas: 2\n")
    with pytest.raises(RayServeConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "'model.n_ctxx'" in msg and "'deployment.replicas'" in msg


def test_bad_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  uri: default\n  load: {n_ctx: [\n")
    with pytest.raises(RayServeConfigError, match=rf"{path.name}:\d+: not valid YAML"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("deployment:\n  num_replicas: 2\n  autoscaling: {min_replicas: 1}\n", "not both"),
        ("deployment:\n  autoscaling: {min_replicas: 3, max_replicas: 2}\n", "max_replicas"),
        ("model: {uri: 'openai:http://h/v1', sha256: '" + "0" * 64 + "'}\n", "local file"),
        ("model: {sha256: xyz}\n", "model.sha256"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_bad_values_refused(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(RayServeConfigError, match=needle):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(RayServeConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_identity_check(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 60)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    ModelConfig(uri=f"gguf:{model}", sha256=digest, size=64).verify_identity()
    with pytest.raises(ModelIdentityError, match="has 64 bytes; the config expects 65"):
        ModelConfig(uri=f"gguf:{model}", size=65).verify_identity()
    with pytest.raises(ModelIdentityError, match="expects " + "a" * 64):
        ModelConfig(uri=f"gguf:{model}", sha256="a" * 64).verify_identity()
    with pytest.raises(ModelIdentityError, match="does not exist on node"):
        ModelConfig(uri=f"gguf:{tmp_path / 'x.gguf'}", size=1).verify_identity()


# -- OpenAI translation ---------------------------------------------------------------------------
def test_messages_translation_round_trips_tool_text() -> None:
    from langchain_core.messages import AIMessage, ToolMessage

    from langchain_setraf._tools import messages_for_template
    from langchain_setraf.serve.openai_routes import RequestError, to_langchain_messages

    raw = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "1 + 2?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "add", "content": "3"},
        # a client that writes tool results as text (this package's attach client)
        {"role": "tool", "content": "Result of add (error): boom"},
    ]
    msgs = to_langchain_messages(raw)
    assert isinstance(msgs[2], AIMessage) and msgs[2].tool_calls[0]["args"] == {"a": 1}
    assert isinstance(msgs[4], ToolMessage) and msgs[4].status == "error"
    rendered = messages_for_template(msgs)
    assert rendered[3] == {"role": "tool", "content": "Result of add: 3"}
    assert rendered[4] == {"role": "tool", "content": "Result of add (error): boom"}
    for bad, needle in [
        ([{"role": "user", "content": [{"type": "image_url"}]}], "only text content"),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}],
            "not JSON",
        ),
        ([], "non-empty"),
    ]:
        with pytest.raises(RequestError, match=needle):
            to_langchain_messages(bad)


# -- OpenAI translation on a plain app (same model, no Ray) ---------------------------------------
@pytest.fixture(scope="module")
def local_client() -> Iterator[TestClient]:
    from langchain_setraf.serve.openai_routes import standalone_app
    from langchain_setraf.serve.ray_app import build_service

    service: ModelService = build_service(ModelConfig(load=LOAD), "local-test")
    with TestClient(standalone_app(service)) as client:
        yield client
    service.chat.release()


def _sse_events(text: str) -> list[Any]:
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.mark.slow
def test_routes_chat_tools_schema_stream(local_client: TestClient) -> None:
    msgs = [{"role": "user", "content": "Add 2 and 3."}]
    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
    r = local_client.post(
        "/v1/chat/completions", json={"messages": msgs, "tools": [tool], "tool_choice": "required"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers[REPLICA_HEADER] == body["system_fingerprint"] == "local-test"
    assert body["setraf"]["replica"] == "local-test"
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"]["name"] == "add"
    assert set(json.loads(call["function"]["arguments"])) == {"a", "b"}

    schema = {
        "type": "object",
        "properties": {"rock": {"type": "string"}, "ohm_m": {"type": "number"}},
        "required": ["rock", "ohm_m"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    r = local_client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Clay, 20 ohm-m"}], "response_format": fmt},
    )
    assert set(json.loads(r.json()["choices"][0]["message"]["content"])) == {"rock", "ohm_m"}

    r = local_client.post(
        "/v1/chat/completions",
        json={"messages": msgs, "stream": True, "stream_options": {"include_usage": True}},
    )
    events = _sse_events(r.text)
    assert r.headers[REPLICA_HEADER] == "local-test"
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2] if e["choices"])
    assert text.strip()
    assert events[-2]["usage"]["completion_tokens"] > 0


@pytest.mark.slow
def test_routes_completions_and_errors(local_client: TestClient) -> None:
    r = local_client.post("/v1/completions", json={"prompt": "Clay is", "max_tokens": 5})
    body = r.json()
    assert body["usage"]["completion_tokens"] > 0 and body["choices"][0]["text"]
    r = local_client.post(
        "/v1/completions", json={"prompt": "Clay is", "max_tokens": 5, "stream": True}
    )
    events = _sse_events(r.text)
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"

    bad = local_client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 2}},
    )
    assert bad.status_code == 400 and "logit_bias" in bad.json()["error"]["message"]
    wrong = local_client.post(
        "/v1/chat/completions",
        json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
    )
    assert wrong.status_code == 404 and "served" in wrong.json()["error"]["message"]
    role = local_client.post("/v1/chat/completions", json={"messages": [{"role": "robot"}]})
    assert role.status_code == 400 and "messages[0].role" in role.json()["error"]["message"]
    models = local_client.get("/v1/models").json()
    assert models["data"][0]["id"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert local_client.post("/tokenize", json={"content": "clay"}).json()["tokens"]


# -- the cluster --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    import ray

    t0 = time.monotonic()
    with local_cluster(cpus_per_node=1) as c:
        ray.init(address=c.address, log_to_driver=False)
        try:
            _poll(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 90, "2 live nodes")
            print(f"\n[ray] two-node cluster up in {time.monotonic() - t0:.1f} s")
            yield c
        finally:
            from ray import serve

            try:
                serve.shutdown()
            finally:
                ray.shutdown()


def _poll(cond: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise AssertionError(f"not reached within {timeout:.0f} s: {what}")


def _deploy(
    name: str,
    prefix: str,
    port: int,
    deployment: dict[str, Any],
    http: dict[str, Any] | None = None,
) -> str:
    from langchain_setraf.serve.ray_app import deploy

    cfg = RayServeConfig.model_validate(
        {
            "model": {"uri": "default", "load": LOAD, "name": "smollm2"},
            "deployment": {"num_cpus": 0.5, "health_check_period_s": 2, **deployment},
            "http": {
                "host": "127.0.0.1",
                "port": port,
                "proxy_location": "HeadOnly",
                **(http or {}),
            },
            "app_name": name,
            "route_prefix": prefix,
            "ray_address": None,
        }
    )
    t0 = time.monotonic()
    deploy(cfg)
    print(f"\n[ray] application {name!r} running in {time.monotonic() - t0:.1f} s")
    return f"http://127.0.0.1:{port}{prefix}"


def _model_deployment(app: str) -> Any:
    """The model replicas' deployment status of ``app`` (``None`` before it exists)."""
    from ray import serve

    from langchain_setraf.serve.ray_app import DEPLOYMENT_NAME

    status = serve.status().applications.get(app)
    return None if status is None else status.deployments.get(DEPLOYMENT_NAME)


def _running(app: str) -> int:
    dep = _model_deployment(app)
    return 0 if dep is None else int(dep.replica_states.get("RUNNING", 0))


@pytest.fixture(scope="module")
def serve_port(cluster: LocalCluster) -> int:
    return free_port()


@pytest.fixture(scope="module")
def two_replicas(cluster: LocalCluster, serve_port: int) -> str:
    url = _deploy("fixed", "/fixed", serve_port, {"num_replicas": 2})
    _poll(lambda: _running("fixed") == 2, 120, "2 running replicas")
    return url


def _chat(url: str, content: str, **extra: Any) -> httpx.Response:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=HTTP_TIMEOUT)


@pytest.mark.slow
def test_twenty_concurrent_requests_use_both_replicas(two_replicas: str) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda i: _chat(two_replicas, f"Name rock number {i}."), range(20)))
    assert [r.status_code for r in answers] == [200] * 20, [
        r.text for r in answers if r.status_code != 200
    ]
    replicas = {r.headers[REPLICA_HEADER] for r in answers}
    for r in answers:
        body = r.json()
        assert body["system_fingerprint"] == body["setraf"]["replica"] == r.headers[REPLICA_HEADER]
        assert body["choices"][0]["message"]["content"]
    assert len(replicas) == 2, f"only {replicas} served"


@pytest.mark.slow
def test_openai_routes_through_the_proxy(two_replicas: str) -> None:
    models = httpx.get(f"{two_replicas}/v1/models", timeout=HTTP_TIMEOUT).json()
    assert models["data"][0]["id"] == "smollm2"
    assert httpx.get(f"{two_replicas}/health", timeout=HTTP_TIMEOUT).json()["status"] == "ok"
    r = _chat(two_replicas, "Hi", stream=True)
    events = _sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert r.headers[REPLICA_HEADER] == events[0]["system_fingerprint"]
    r = httpx.post(
        f"{two_replicas}/v1/completions",
        json={"model": "smollm2", "prompt": "Granite is", "max_tokens": 4},
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] > 0


@pytest.mark.slow
def test_ert_chain_through_the_one_line_client(two_replicas: str) -> None:
    """The client change is one line; the ERT interpretation chain runs unchanged."""
    from langchain_setraf import init_chat_model
    from langchain_setraf.ert.chains import Interpretation, interpretation_chain

    chat = init_chat_model(f"openai:{two_replicas}/v1", model="smollm2", max_tokens=160)
    example = REPO / "examples" / "two_layer_wenner.dat"
    result = interpretation_chain(chat, language="en").invoke(
        {"survey": example, "context": "prairie"}
    )
    assert isinstance(result, Interpretation) and result.language == "en"
    assert result.raw_text.strip() and len(result.units) >= 2
    assert result.facts["array"] == "wenner-alpha"
    # the form was decoded under its JSON schema by a replica, not rebuilt from defaults
    assert not any("trivial values were used" in w for w in result.warnings), result.warnings


@pytest.mark.slow
def test_killed_replica_is_retried_restarts_and_no_request_hangs(two_replicas: str) -> None:
    """SIGKILL one replica's process while 4 clients send requests (2 plain, 2 streaming).

    A request whose replica died before its answer began is sent to the other replica by
    the router: every plain request succeeds, and at least one took 2 attempts. A stream
    that had begun ends with an in-band ``replica_died`` error event, never a 500 or a
    hang. Requests after the restart succeed and the replica count comes back to 2.
    """
    from langchain_setraf.serve.ray_router import ATTEMPTS_HEADER

    first = _chat(two_replicas, "Hello")
    victim_id = first.headers[REPLICA_HEADER]
    victim_pid = first.json()["setraf"]["pid"]
    outcomes: list[tuple[bool, str, int, str]] = []  # (stream, kind, attempts, detail)

    def client(i: int) -> None:
        stream = i % 2 == 1
        for j in range(4):  # bounded: 4 requests per client
            try:
                r = _chat(two_replicas, f"Describe rock {i}-{j}.", stream=stream, max_tokens=48)
                attempts = int(r.headers.get(ATTEMPTS_HEADER, "0"))
                if not stream:
                    ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
                    outcomes.append(
                        (stream, "ok" if ok else f"error {r.status_code}", attempts, r.text[-300:])
                    )
                    continue
                events = _sse_events(r.text)
                if r.status_code == 200 and events and events[-1] == "[DONE]":
                    kind = "ok"
                elif r.status_code == 200 and events and "error" in events[-1]:
                    kind = f"in-band {events[-1]['error']['code']}"
                else:
                    kind = f"error {r.status_code}"
                outcomes.append((stream, kind, attempts, r.text[-300:]))
            except httpx.TimeoutException as exc:  # a hang: the test fails below
                outcomes.append((stream, "timeout", 0, repr(exc)))
            except httpx.HTTPError as exc:  # connection dropped: not expected any more
                outcomes.append((stream, "error transport", 0, repr(exc)))

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(client, i) for i in range(4)]
        time.sleep(1.5)
        os.kill(victim_pid, signal.SIGKILL)
        for f in futures:
            f.result(timeout=600)
    print("\n[ray] outcomes around the kill:", sorted((o[0], o[1], o[2]) for o in outcomes))
    assert len(outcomes) == 16
    plain = [o for o in outcomes if not o[0]]
    streams = [o for o in outcomes if o[0]]
    assert [o[1] for o in plain] == ["ok"] * 8, plain
    assert {o[1] for o in streams} <= {"ok", "in-band replica_died"}, streams
    assert max(o[2] for o in outcomes) >= 2, "no request was retried: the kill hit nothing"

    def recovered() -> bool:
        dep = _model_deployment("fixed")
        return int(dep.replica_states.get("RUNNING", 0)) == 2 and dep.status == "HEALTHY"

    _poll(recovered, 180, "2 healthy replicas after the kill")
    after = [_chat(two_replicas, f"After {i}") for i in range(6)]
    assert [r.status_code for r in after] == [200] * 6, [r.text for r in after]
    assert victim_id not in {r.headers[REPLICA_HEADER] for r in after}


@pytest.mark.slow
def test_guarded_ingress_through_the_proxy(
    cluster: LocalCluster, serve_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API key, body limit, schema bound and timeout hold through Ray's proxy, and the
    package's own attach client works with the key (issue 21, attack 7)."""
    key = "ray-ingress-test-key-0123456789"
    monkeypatch.setenv("SETRAF_TEST_RAY_KEY", key)
    guard = {"api_key_env": "SETRAF_TEST_RAY_KEY", "max_body_bytes": 4096, "request_timeout_s": 3}
    url = _deploy("guarded", "/guarded", serve_port, {"num_replicas": 1}, guard)
    _poll(lambda: _running("guarded") == 1, 120, "1 running guarded replica")
    auth = {"Authorization": f"Bearer {key}"}

    def post(body: Any, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{url}/v1/chat/completions", json=body, headers=headers, timeout=HTTP_TIMEOUT
        )

    try:
        hi = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        assert post(hi, {}).status_code == 401
        assert post(hi, {"Authorization": "Bearer " + key[::-1]}).status_code == 401
        assert httpx.get(f"{url}/v1/models", timeout=HTTP_TIMEOUT).status_code == 401
        models = httpx.get(f"{url}/v1/models", headers=auth, timeout=HTTP_TIMEOUT).json()
        assert models["data"][0]["id"] == "smollm2" and "/" not in json.dumps(models["data"][0])
        assert post(hi, auth).status_code == 200

        big = {**hi, "messages": [{"role": "user", "content": "x" * 8000}]}
        assert post(big, auth).status_code == 413

        schema = {"type": "array", "items": {"type": "string"}, "minItems": 1e8}
        fmt = {"type": "json_schema", "json_schema": {"name": "l", "schema": schema}}
        t0 = time.monotonic()
        r = post({**hi, "response_format": fmt}, auth)
        print(f"\n[ray] attack 7 refused in {time.monotonic() - t0:.2f} s: {r.status_code}")
        assert r.status_code == 400 and "minItems" in r.json()["error"]["message"]

        long_schema = {
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 3000}},
            "required": ["text"],
        }
        fmt = {"type": "json_schema", "json_schema": {"name": "l", "schema": long_schema}}
        r = post({**hi, "response_format": fmt, "max_tokens": 3000}, auth)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout", r.text

        from langchain_setraf import ChatGGUF

        chat = ChatGGUF(server_url=f"{url}/v1", api_key_env="SETRAF_TEST_RAY_KEY", max_tokens=8)
        assert chat.invoke("Name a rock.").content
    finally:
        from ray import serve

        serve.delete("guarded")


@pytest.mark.slow
def test_client_that_leaves_stops_the_generation_behind_the_router(
    cluster: LocalCluster, serve_port: int
) -> None:
    """Through Ray's proxy, the router and the replica: a client that hangs up (mid-stream,
    or waiting for a plain answer) frees the replica's slot within seconds, long before a
    forced 3,000-character answer could have been written."""
    from ray import serve

    url = _deploy("leave", "/leave", serve_port, {"num_replicas": 1})
    _poll(lambda: _running("leave") == 1, 120, "1 running replica")
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 3000}},
        "required": ["text"],
    }
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Describe clay."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": schema}},
        "max_tokens": 3000,
    }

    def inflight() -> int:
        return int(httpx.get(f"{url}/health", timeout=HTTP_TIMEOUT).json()["inflight"])

    try:
        with (
            httpx.Client(timeout=HTTP_TIMEOUT) as c,
            c.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as r,
        ):
            assert r.status_code == 200
            lines = r.iter_lines()  # kept: dropping it closes the connection (httpcore)
            next(lines)
            assert inflight() == 1
        t0 = time.monotonic()
        _poll(lambda: inflight() == 0, 10, "the streamed generation to stop", every=0.1)
        print(f"\n[ray] stream: slot free {time.monotonic() - t0:.2f} s after the client left")

        def leave_while_waiting() -> None:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/v1/chat/completions", json=body, timeout=4.0)

        leave_while_waiting()  # the answer would take far longer: the client gives up
        t0 = time.monotonic()
        _poll(lambda: inflight() == 0, 10, "the plain generation to stop", every=0.1)
        print(f"[ray] plain: slot free {time.monotonic() - t0:.2f} s after the client left")
    finally:
        serve.delete("leave")


@pytest.mark.slow
def test_deleting_the_app_drains_an_in_flight_stream(
    cluster: LocalCluster, serve_port: int
) -> None:
    """What ``setraf serve ray`` does on SIGTERM (``serve.delete``) lets a stream that
    is being written finish, with ``[DONE]``, within ``graceful_shutdown_timeout_s``."""
    from ray import serve

    url = _deploy("drain", "/drain", serve_port, {"num_replicas": 1})
    _poll(lambda: _running("drain") == 1, 120, "1 running replica to drain")
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 200, "maxLength": 220}},
        "required": ["text"],
    }
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Describe clay."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": schema}},
        "max_tokens": 400,
        "stream": True,
    }
    lines: list[str] = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=HTTP_TIMEOUT) as r:
        assert r.status_code == 200
        it = r.iter_lines()
        lines.append(next(it))  # the stream is under way: now stop the application
        deleting = ThreadPoolExecutor(max_workers=1)
        done = deleting.submit(serve.delete, "drain")
        lines += list(it)
        done.result(timeout=120)
        deleting.shutdown()
    events = _sse_events("\n".join(lines))
    assert events[-1] == "[DONE]", lines[-3:]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])
    assert len(json.loads(text)["text"]) >= 200


@pytest.mark.slow
def test_autoscaling_up_on_burst_and_back_down(cluster: LocalCluster, serve_port: int) -> None:
    auto = {
        "autoscaling": {
            "min_replicas": 1,
            "max_replicas": 2,
            "target_ongoing_requests": 1,
            "upscale_delay_s": 0.5,
            "downscale_delay_s": 4,
            "metrics_interval_s": 0.5,
            "look_back_period_s": 2,
        },
        "max_ongoing_requests": 4,
    }
    url = _deploy("auto", "/auto", serve_port, auto)
    _poll(lambda: _running("auto") == 1, 120, "1 running replica at start")

    stop_at = time.monotonic() + 180  # bounded burst: until 2 replicas run, or 180 s
    peak = 1

    def burst(i: int) -> None:
        for j in range(40):
            if time.monotonic() > stop_at or peak >= 2:
                return
            _chat(url, f"Describe basalt {i}-{j} in detail.", max_tokens=64)

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(burst, i) for i in range(6)]
        while time.monotonic() < stop_at and not all(f.done() for f in futures):
            peak = max(peak, _running("auto"))
            if peak >= 2:
                break
            time.sleep(0.5)
        for f in futures:
            f.result(timeout=300)
    assert peak == 2, "the burst did not raise the replica count to 2"
    _poll(lambda: _running("auto") == 1, 180, "back to 1 replica when idle")

    from ray import serve

    serve.delete("auto")


# -- LangChain's standard suite through the attach client ---------------------------------------
try:
    import test_chat_standard_server as _attach_suite
except ImportError as exc:  # pragma: no cover - the attach client's tests are missing
    _attach_suite = None
    _ATTACH_MISSING = str(exc)

_ray_url: str | None = None


@pytest.fixture(scope="module")
def _server(two_replicas: str) -> Iterator[str]:
    """The attach suite's server fixture, here: the Ray proxy in front of 2 replicas."""
    global _ray_url
    _ray_url = f"{two_replicas}/v1"
    try:
        yield _ray_url
    finally:
        _ray_url = None


if _attach_suite is not None:

    @pytest.mark.slow
    class TestRayServeChatStandard(_attach_suite.TestChatGGUFServerIntegration):  # type: ignore[misc,name-defined]
        """``ChatGGUF(server_url=<Ray proxy>)`` through LangChain's integration suite."""

        @property
        def chat_model_params(self) -> dict[str, Any]:
            assert _ray_url is not None, "the Ray deployment is not running"
            return {"server_url": _ray_url, "temperature": 0, "max_tokens": 96, "seed": 0}
