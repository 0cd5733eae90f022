"""The ``openai`` backend: attach to a server that speaks the OpenAI-compatible API.

Positive cases run against a real llama.cpp server (the xllamacpp wheel in a child
process, serving SmolLM2-135M on 127.0.0.1). Faults run against small real loopback
servers that misbehave on purpose (``helpers.fault_server``): every one must end in a
:class:`ServerError` within the timeout, never a hang.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from helpers import fault_server as fs
from helpers.server_proc import RunningServer, free_port, llama_server
from langchain_setraf.backends.base import GenerationRequest, GenerationStats
from langchain_setraf.backends.openai_compat import (
    HTTPHandle,
    OpenAICompatBackend,
    normalize_base_url,
)
from langchain_setraf.backends.server_errors import (
    ServerError,
    ServerResponseError,
    ServerUnavailableError,
)
from langchain_setraf.models import default_gguf_path

GREEDY = {"temperature": 0.0, "max_tokens": 8}
#: Bound on every polling loop against the real server (seconds; never reached when green).
POLL_DEADLINE = 120.0


def _req(params: dict[str, Any] | None = None, **kw: Any) -> GenerationRequest:
    return GenerationRequest(params=dict(GREEDY if params is None else params), **kw)


def _collect(it: Iterator[str]) -> str:
    return "".join(it)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:8080", "http://h:8080/v1"),
        ("http://h:8080/", "http://h:8080/v1"),
        ("http://h:8080/v1/", "http://h:8080/v1"),
        ("https://gw.example/llm/v1", "https://gw.example/llm/v1"),
        ("https://gw.example/llm", "https://gw.example/llm/v1"),
    ],
)
def test_base_url_is_normalised(url: str, expected: str) -> None:
    assert normalize_base_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["", "127.0.0.1:8080", "ftp://h/v1", "http:///v1", "http://h:99999/v1", "http://h/v1?x=1"],
)
def test_bad_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="server_url"):
        OpenAICompatBackend().spec_for(url)


def test_spec_is_url_and_model_and_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY_VAR", "sk-secret-123")
    monkeypatch.setenv("MY_KEY_VAR_ORIGIN", "http://h:1")  # the key is for that server
    backend = OpenAICompatBackend()
    spec = backend.spec_for("http://h:1/", server_model="m", api_key_env="MY_KEY_VAR")
    assert spec.backend == "openai"
    assert spec.identity == ("http://h:1/v1", "m")
    assert spec.options_dict == {
        "api_key_env": "MY_KEY_VAR",
        "api_key_ref": None,
        "request_timeout": 600.0,
    }
    handle = backend.load(spec)
    try:
        assert "sk-secret" not in repr(spec) + spec.describe() + repr(handle)
        assert handle.estimated_bytes == 0
    finally:
        handle.close()
    assert backend.spec_for("http://h:1/v1") == backend.spec_for("http://h:1")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"server_model": ""}, "server_model"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"api_key_env": ""}, "api_key_env"),
        ({"api_key_ref": "sk-the-key-itself"}, "api_key_ref is a reference"),
    ],
)
def test_bad_spec_options_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OpenAICompatBackend().spec_for("http://h:1/v1", **kwargs)


def test_a_key_reference_is_opaque_stable_and_resolved_only_in_this_process() -> None:
    from langchain_setraf.backends.openai_compat import api_key_ref

    ref = api_key_ref("sk-secret-456")
    assert ref.startswith("key-") and "secret" not in ref
    assert api_key_ref("sk-secret-456") == ref != api_key_ref("sk-other")
    backend = OpenAICompatBackend()
    spec = backend.spec_for("http://127.0.0.1:1/v1", server_model="m", api_key_ref=ref)
    assert "sk-secret" not in repr(spec) + spec.describe()
    # a reference no class made (another process's, a guess) names no key: refused at load
    unknown = backend.spec_for("http://127.0.0.1:1/v1", api_key_ref="key-0123456789abcdef")
    with pytest.raises(ValueError, match="names no key given to a class in this process"):
        backend.load(unknown)


def test_unknown_sampling_parameter_is_refused() -> None:
    handle = HTTPHandle("http://127.0.0.1:9/v1", "m", timeout=1.0)
    with handle, pytest.raises(TypeError, match="max_new_tokens"):
        handle.generate("x", _req({"max_new_tokens": 3}), GenerationStats())


def test_bad_constraint_is_refused() -> None:
    handle = HTTPHandle("http://127.0.0.1:9/v1", "m", timeout=1.0)
    with handle, pytest.raises(ValueError, match="schema"):
        handle.chat([], _req(constraint={"grammar": "root ::= x"}), GenerationStats())


def test_closed_handle_refuses_requests() -> None:
    handle = HTTPHandle("http://127.0.0.1:9/v1", "m", timeout=1.0)
    handle.close()
    with pytest.raises(RuntimeError, match="closed"):
        handle.generate("x", _req(), GenerationStats())


# -- faults: every one a ServerError within the timeout ---------------------------------------


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with HTTPHandle(url, "m", timeout=5.0) as handle:
        with pytest.raises(ServerUnavailableError, match="cannot connect") as info:
            _collect(handle.generate("x", _req(), GenerationStats()))
    assert url in str(info.value)
    assert info.value.url.startswith(url)


def test_unknown_host_is_unavailable() -> None:
    with HTTPHandle("http://no-such-host.invalid:8080/v1", "m", timeout=5.0) as handle:
        with pytest.raises(ServerUnavailableError, match=r"no-such-host.invalid"):
            _collect(handle.chat([{"role": "user", "content": "hi"}], _req(), GenerationStats()))


def test_html_404_says_wrong_url() -> None:
    routes = {"/v1/completions": fs.not_found_html}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        with pytest.raises(ServerResponseError, match=r"HTTP 404.*HTML") as info:
            _collect(handle.generate("x", _req(), GenerationStats()))
    assert info.value.status == 404
    assert "404 Not Found" in str(info.value)


def test_http_500_quotes_the_servers_message() -> None:
    routes = {"/v1/chat/completions": fs.error_500}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        with pytest.raises(ServerResponseError, match=r"HTTP 500.*CUDA out of memory") as info:
            _collect(handle.chat([{"role": "user", "content": "hi"}], _req(), GenerationStats()))
    assert info.value.server_message == "CUDA out of memory (injected)"


def test_malformed_json_line_is_quoted() -> None:
    routes = {"/v1/completions": fs.malformed_line}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        pieces: list[str] = []
        with pytest.raises(ServerResponseError, match=r'malformed JSON event: \'{"choices": \[\''):
            pieces.extend(handle.generate("x", _req(), GenerationStats()))
    assert pieces == ["Hello"]


def test_body_that_is_not_an_event_stream() -> None:
    routes = {"/v1/completions": fs.not_sse}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        with pytest.raises(ServerResponseError, match=r"not server-sent events.*proxy login"):
            _collect(handle.generate("x", _req(), GenerationStats()))


@pytest.mark.parametrize("route", [fs.truncated_close, fs.truncated_chunked])
def test_truncated_stream_is_an_error(route: fs.Route) -> None:
    routes = {"/v1/chat/completions": route}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        with pytest.raises(ServerResponseError, match="truncated"):
            _collect(handle.chat([{"role": "user", "content": "hi"}], _req(), GenerationStats()))


def test_error_event_mid_stream() -> None:
    routes = {"/v1/completions": fs.error_event}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        with pytest.raises(ServerResponseError, match="mid-stream: the context is full"):
            _collect(handle.generate("x", _req(), GenerationStats()))


def test_server_that_never_answers_times_out() -> None:
    routes = {"/v1/completions": fs.hang}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=0.5) as handle:
        with pytest.raises(
            ServerUnavailableError, match=r"within request_timeout=0.5 s.*sent nothing"
        ) as info:
            _collect(handle.generate("x", _req(), GenerationStats()))
    assert info.value.timeout == 0.5
    assert srv.base_url in str(info.value)


def test_server_that_goes_silent_mid_stream_times_out() -> None:
    routes = {"/v1/completions": fs.hang_midstream}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=0.5) as handle:
        pieces: list[str] = []
        with pytest.raises(ServerUnavailableError, match="middle of a stream") as info:
            pieces.extend(handle.generate("x", _req(), GenerationStats()))
    assert pieces == ["Hello"]
    assert info.value.timeout == 0.5


def test_wrong_model_name_lists_the_served_models() -> None:
    routes = {
        "/v1/chat/completions": fs.model_not_found,
        "/v1/models": fs.models_listing("qwen2.5:0.5b", "smollm2:135m"),
    }
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "smolm", timeout=5.0) as handle:
        for _ in range(2):
            with pytest.raises(ServerResponseError, match=r"does not serve model 'smolm'") as info:
                _collect(handle.chat([{"role": "user", "content": "x"}], _req(), GenerationStats()))
            assert "'qwen2.5:0.5b', 'smollm2:135m'" in str(info.value)
        assert [r.path for r in srv.requests].count("/v1/models") == 1  # asked once per handle


def test_model_defaults_to_the_servers_first() -> None:
    routes = {"/v1/completions": fs.good_stream, "/v1/models": fs.models_listing("a", "b")}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, None, timeout=5.0) as handle:
        _collect(handle.generate("x", _req(), GenerationStats()))
        _collect(handle.generate("x", _req(), GenerationStats()))
        paths = [r.path for r in srv.requests]
        assert paths == ["/v1/models", "/v1/completions", "/v1/completions"]
        assert srv.requests[1].json()["model"] == "a"


def test_server_listing_no_model_is_an_error() -> None:
    routes = {"/v1/models": fs.models_listing()}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, None, timeout=5.0) as handle:
        with pytest.raises(ServerResponseError, match=r"lists no model.*server_model="):
            _collect(handle.generate("x", _req(), GenerationStats()))


def test_api_key_from_the_environment_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = {"/v1/completions": fs.unauthorized}
    backend = OpenAICompatBackend()
    with fs.FaultServer(routes) as srv:
        monkeypatch.delenv("SETRAF_TEST_KEY", raising=False)
        no_key = backend.load(
            backend.spec_for(srv.base_url, server_model="m", api_key_env="SETRAF_TEST_KEY")
        )
        with pytest.raises(ServerResponseError, match=r"HTTP 401.*api_key_env.*Invalid API Key"):
            _collect(no_key.generate("x", _req(), GenerationStats()))
        no_key.close()
        monkeypatch.setenv("SETRAF_TEST_KEY", "good-key")
        spec = backend.spec_for(srv.base_url, server_model="m", api_key_env="SETRAF_TEST_KEY")
        handle = backend.load(spec)
        try:
            assert _collect(handle.generate("x", _req(), GenerationStats())) == "Hello world"
        finally:
            handle.close()
        assert srv.requests[-1].headers["authorization"] == "Bearer good-key"
        assert all("authorization" not in r.headers for r in srv.requests[:2])


def test_request_body_and_stream_parsing() -> None:
    routes = {"/v1/completions": fs.good_stream, "/v1/chat/completions": fs.good_stream}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        stats = GenerationStats()
        params = {"max_tokens": 5, "temperature": 0.2, "top_k": 7, "min_p": None, "seed": 3}
        request = _req(params, stop=["\n\n"], constraint={"schema": {"type": "object"}})
        assert list(handle.generate("The sky", request, stats)) == ["Hello", " world"]
        assert (stats.prompt_tokens, stats.completion_tokens) == (5, 2)
        assert stats.finish_reason == "stop"
        assert stats.served_by == "replica-7"
        posts = [r for r in srv.requests if r.method == "POST"]
        body = posts[0].json()
        assert body == {
            "prompt": "The sky",
            "model": "m",
            "max_tokens": 5,
            "temperature": 0.2,
            "top_k": 7,
            "seed": 3,
            "stop": ["\n\n"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
            },
            # llama.cpp's text completions read the schema from their own field
            "json_schema": {"type": "object"},
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
        text = _collect(handle.chat(messages, _req(constraint={"schema": None}), GenerationStats()))
        assert text == "Hello world"
        chat_body = [r for r in srv.requests if r.method == "POST"][1].json()
        assert chat_body["messages"] == messages
        assert chat_body["response_format"] == {"type": "json_object"}


def test_closing_the_stream_early_disconnects() -> None:
    routes = {"/v1/completions": fs.endless_stream}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        stream = handle.generate("x", _req(), GenerationStats())
        assert [next(stream) for _ in range(3)] == ["x", "x", "x"]
        stream.close()
        deadline = time.monotonic() + 10.0
        while srv.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.disconnects == 1


def test_token_counting_needs_llama_cpp_endpoints() -> None:
    with fs.FaultServer({}) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        with pytest.raises(ServerResponseError, match=r"has no /tokenize") as info:
            handle.count_tokens("hello")
        assert srv.root in str(info.value)
        with pytest.raises(ServerResponseError, match=r"has no /apply-template"):
            handle.render_chat([{"role": "user", "content": "hi"}])


def test_errors_form_one_family() -> None:
    assert issubclass(ServerUnavailableError, ServerError)
    assert issubclass(ServerResponseError, ServerError)
    assert issubclass(ServerError, RuntimeError)


# -- a real llama.cpp server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """SmolLM2-135M served by the xllamacpp wheel with 2 slots, for this module."""
    with llama_server(default_gguf_path(), tmp_path_factory.mktemp("server"), parallel=2) as s:
        yield s


@pytest.fixture()
def handle(server: RunningServer) -> Iterator[HTTPHandle]:
    spec = OpenAICompatBackend().spec_for(server.base_url, request_timeout=300.0)
    h = OpenAICompatBackend().load(spec)
    yield h
    h.close()


def _slots(server: RunningServer) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(server.root + "/slots", timeout=10.0).json()
    return data


def _metric(server: RunningServer, name: str) -> float:
    text = httpx.get(server.root + "/metrics", timeout=10.0).text
    for line in text.splitlines():
        if line.startswith(f"llamacpp:{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name} in {text[:500]}")


def _wait_idle(server: RunningServer) -> None:
    deadline = time.monotonic() + POLL_DEADLINE
    while any(s["is_processing"] for s in _slots(server)):
        assert time.monotonic() < deadline, "the server never went idle"
        time.sleep(0.1)


@pytest.mark.slow
def test_generate_streams_with_usage(handle: HTTPHandle) -> None:
    stats = GenerationStats()
    pieces = list(handle.generate("1, 2, 3, 4,", _req(), stats))
    assert len(pieces) > 1
    assert "".join(pieces).strip().startswith("5")
    assert stats.completion_tokens == 8
    assert stats.prompt_tokens == handle.count_tokens("1, 2, 3, 4,")
    assert stats.finish_reason == "length"
    assert stats.served_by == handle.base_url
    assert handle.model == str(default_gguf_path())  # the server's only model


@pytest.mark.slow
def test_chat_streams_with_the_servers_template(handle: HTTPHandle) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    stats = GenerationStats()
    text = _collect(handle.chat(messages, _req({"temperature": 0.0, "max_tokens": 6}), stats))
    assert text.strip()
    rendered = handle.render_chat(messages)
    assert rendered.endswith("<|im_start|>assistant\n")
    assert stats.prompt_tokens == handle.count_tokens(rendered)
    assert 0 < stats.completion_tokens <= 6


@pytest.mark.slow
def test_stop_sequence_ends_the_text(handle: HTTPHandle) -> None:
    stats = GenerationStats()
    request = _req({"temperature": 0.0, "max_tokens": 24}, stop=[" 7"])
    text = _collect(handle.generate("1, 2, 3, 4,", request, stats))
    assert text == " 5, 6,"
    assert stats.finish_reason == "stop"


@pytest.mark.slow
def test_seed_and_greedy_are_deterministic(handle: HTTPHandle) -> None:
    greedy = _req({"temperature": 0.0, "max_tokens": 8})
    first = _collect(handle.generate("Once upon a time", greedy, GenerationStats()))
    assert _collect(handle.generate("Once upon a time", greedy, GenerationStats())) == first
    seeded = _req({"temperature": 1.5, "top_k": 0, "top_p": 1.0, "seed": 1234, "max_tokens": 8})
    again = [_collect(handle.generate("Once upon a time", seeded, GenerationStats())) for _ in "ab"]
    assert again[0] == again[1]


@pytest.mark.slow
def test_json_schema_constraint_gives_valid_json(handle: HTTPHandle) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "population": {"type": "integer"},
        },
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    messages = [{"role": "user", "content": "Name a city and its population."}]
    stats = GenerationStats()
    request = _req({"temperature": 0.0, "max_tokens": 60}, constraint={"schema": schema})
    text = _collect(handle.chat(messages, request, stats))
    assert stats.finish_reason == "stop", text
    jsonschema.validate(json.loads(text), schema)


@pytest.mark.slow
def test_json_object_constraint(handle: HTTPHandle) -> None:
    messages = [{"role": "user", "content": 'Reply with {"ok": true}'}]
    stats = GenerationStats()
    request = _req({"temperature": 0.0, "max_tokens": 40}, constraint={"schema": None})
    text = _collect(handle.chat(messages, request, stats))
    assert stats.finish_reason == "stop", text
    assert isinstance(json.loads(text), dict)


@pytest.mark.slow
def test_concurrent_requests_run_at_once(handle: HTTPHandle, server: RunningServer) -> None:
    """Two threads on one handle: the server has both in flight at the same time."""
    _wait_idle(server)
    errors: list[BaseException] = []
    first_piece = threading.Barrier(3, timeout=POLL_DEADLINE)
    stop_reading = threading.Event()

    def worker() -> None:
        try:
            stream = handle.generate(
                "1, 2, 3, 4,", _req({"temperature": 0.0, "max_tokens": 400}), GenerationStats()
            )
            next(stream)
            first_piece.wait()
            for _ in stream:
                if stop_reading.is_set():
                    break
            stream.close()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            first_piece.abort()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        first_piece.wait()  # both streams have produced text: both requests are in flight
        busy = sum(s["is_processing"] for s in _slots(server))
    finally:
        stop_reading.set()
        for t in threads:
            t.join(POLL_DEADLINE)
    assert not errors, errors
    assert busy == 2


@pytest.mark.slow
def test_closing_the_stream_stops_the_generation(handle: HTTPHandle, server: RunningServer) -> None:
    _wait_idle(server)
    before = _metric(server, "tokens_predicted_total")
    stream = handle.generate(
        "1, 2, 3, 4,", _req({"temperature": 0.0, "max_tokens": 400}), GenerationStats()
    )
    pieces = [next(stream) for _ in range(3)]
    stream.close()
    assert len(pieces) == 3
    _wait_idle(server)
    predicted = _metric(server, "tokens_predicted_total") - before
    assert predicted < 400  # greedy counting would run to max_tokens had it not been stopped


@pytest.mark.slow
def test_backend_tokenize_and_render_chat(server: RunningServer) -> None:
    backend = OpenAICompatBackend()
    spec = backend.spec_for(server.root)
    assert backend.tokenize(spec, "Hello world<|im_end|>") == [19556, 905, 2]
    prompt = backend.render_chat(spec, [{"role": "user", "content": "Hi"}])
    assert "<|im_start|>user\nHi<|im_end|>" in prompt


@pytest.mark.slow
def test_wrong_model_name_on_a_real_server(server: RunningServer) -> None:
    """llama-server answers any model name; a name it does not list is still refused."""
    with HTTPHandle(server.base_url, "no-such-model", timeout=60.0) as h:
        with pytest.raises(ServerResponseError, match=r"does not serve model 'no-such-model'"):
            _collect(h.generate("x", _req(), GenerationStats()))
        assert str(default_gguf_path()) in h.served_models()


# -- through the LangChain classes ---------------------------------------------------------------


def test_class_attaches_and_never_shows_the_key(
    monkeypatch: pytest.MonkeyPatch, cache: Any
) -> None:
    from langchain_setraf import ChatGGUF

    monkeypatch.setenv("SETRAF_API_KEY", "good-key")
    routes = {"/v1/chat/completions": fs.unauthorized}
    with fs.FaultServer(routes) as srv:
        chat = ChatGGUF(server_url=srv.root, server_model="m")
        message = chat.invoke("hi")
        assert message.content == "Hello world"
        assert message.response_metadata["served_by"] == "replica-7"
        assert message.usage_metadata is not None
        assert message.usage_metadata["input_tokens"] == 5
        assert srv.requests[-1].headers["authorization"] == "Bearer good-key"
        shown = repr(chat) + str(chat.model_dump()) + json.dumps(chat._identifying_params)
        assert "good-key" not in shown
        chat.release()


def test_class_reports_an_unreachable_url(cache: Any) -> None:
    from langchain_setraf import GGUFLLM

    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = GGUFLLM(server_url=url, request_timeout=5.0)
    with pytest.raises(ServerUnavailableError, match=f"cannot connect to server at {url}"):
        llm.invoke("hi")


def test_class_refuses_file_options_with_a_url() -> None:
    from langchain_setraf import ChatGGUF

    with pytest.raises(ValueError, match="n_ctx would be ignored"):
        ChatGGUF(server_url="http://127.0.0.1:9/v1", n_ctx=4096)


@pytest.mark.slow
def test_llm_over_the_server(server: RunningServer, cache: Any) -> None:
    from langchain_setraf import GGUFLLM, init_llm

    llm = GGUFLLM(server_url=server.base_url, temperature=0, max_tokens=6)
    chunks = list(llm.stream("1, 2, 3, 4,"))
    assert len(chunks) > 1
    assert "".join(chunks).strip().startswith("5")
    text = "Layer 2: clay, 20 ohm-m <|im_end|>"
    assert llm.get_num_tokens(text) == GGUFLLM().get_num_tokens(text)  # the file's vocabulary
    same = init_llm(f"openai:{server.root}", model=str(default_gguf_path()), temperature=0)
    assert isinstance(same, GGUFLLM)
    assert same.server_model == str(default_gguf_path())
    assert same.invoke("1, 2, 3, 4,", max_tokens=6) == "".join(chunks)


@pytest.mark.slow
def test_chat_over_the_server(server: RunningServer, cache: Any) -> None:
    import asyncio

    from pydantic import BaseModel

    from langchain_setraf import ChatGGUF, init_chat_model

    chat = init_chat_model(
        f"openai:{server.base_url}", model=str(default_gguf_path()), temperature=0, max_tokens=24
    )
    assert isinstance(chat, ChatGGUF)
    message = asyncio.run(chat.ainvoke("Say hello."))
    assert isinstance(message.content, str) and message.content.strip()
    assert message.response_metadata["served_by"] == server.base_url
    assert message.usage_metadata is not None and message.usage_metadata["input_tokens"] > 0

    class Layer(BaseModel):
        material: str
        resistivity_ohm_m: float

    chat = ChatGGUF(server_url=server.base_url, temperature=0, max_tokens=96)
    layer = chat.with_structured_output(Layer).invoke("Clay at 20 ohm-m.")
    assert isinstance(layer, Layer)

    def get_resistivity(material: str) -> float:
        """Typical resistivity of a material in ohm-m."""
        return 20.0

    tooled = chat.bind_tools([get_resistivity], tool_choice="get_resistivity")
    call = tooled.invoke("What is the resistivity of clay?")
    assert call.tool_calls and call.tool_calls[0]["name"] == "get_resistivity"
    assert isinstance(call.tool_calls[0]["args"].get("material"), str)


@pytest.mark.slow
def test_class_streams_run_at_once(server: RunningServer, cache: Any) -> None:
    """Two threads on one ChatGGUF: both requests are in the server at the same time (the
    cache does not serialise an HTTP backend's generations)."""
    from langchain_setraf import ChatGGUF

    _wait_idle(server)
    chat = ChatGGUF(server_url=server.base_url, temperature=0, max_tokens=400)
    errors: list[BaseException] = []
    first_piece = threading.Barrier(3, timeout=POLL_DEADLINE)
    stop_reading = threading.Event()

    def worker() -> None:
        try:
            stream = chat.stream("Count from 1 to 500, comma-separated.")
            next(stream)
            first_piece.wait()
            for _ in stream:
                if stop_reading.is_set():
                    break
            stream.close()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
            first_piece.abort()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        first_piece.wait()
        busy = sum(s["is_processing"] for s in _slots(server))
    finally:
        stop_reading.set()
        for t in threads:
            t.join(POLL_DEADLINE)
    assert not errors, errors
    assert busy == 2


def test_multi_line_events_are_joined() -> None:
    routes = {"/v1/chat/completions": fs.multiline_events}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        stats = GenerationStats()
        assert _collect(handle.chat([{"role": "user", "content": "x"}], _req(), stats)) == "Hi"
        assert stats.finish_reason == "stop"


def test_a_dropped_keep_alive_connection_is_retried_once() -> None:
    routes = {"/v1/completions": fs.first_dropped_then(fs.good_stream)}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        assert _collect(handle.generate("x", _req(), GenerationStats())) == "Hello world"
        assert [r.path for r in srv.requests].count("/v1/completions") == 2


def test_a_server_that_always_drops_the_connection() -> None:
    routes = {"/v1/completions": fs.close_without_answer}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        with pytest.raises(ServerUnavailableError, match="closed the connection without an answer"):
            _collect(handle.generate("x", _req(), GenerationStats()))
        assert [r.path for r in srv.requests].count("/v1/completions") == 2


class _NamedServerDied(ServerError):
    pass


class _HookedHandle(HTTPHandle):
    """What the managed backend does: name the server's fate in transport failures."""

    before = 0

    def _before_request(self) -> None:
        self.before += 1

    def _on_transport_error(self, exc: ServerError) -> BaseException:
        return _NamedServerDied(f"server pid 1234 exited with status -9 ({exc})", url=exc.url)


@pytest.mark.parametrize(
    ("route", "expected"),
    [(fs.truncated_chunked, "truncated"), (fs.close_without_answer, "without an answer")],
)
def test_subclass_hooks_see_every_transport_failure(route: fs.Route, expected: str) -> None:
    with fs.FaultServer({"/v1/completions": route}) as srv:
        with _HookedHandle(srv.base_url, "m", timeout=5.0) as handle:
            with pytest.raises(_NamedServerDied, match=f"status -9.*{expected}"):
                _collect(handle.generate("x", _req(), GenerationStats()))
            assert handle.before == 2  # /v1/models (the name check), then the completion


def test_subclass_hook_sees_a_refused_connection() -> None:
    with _HookedHandle(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=5.0) as handle:
        with pytest.raises(_NamedServerDied, match="cannot connect"):
            _collect(handle.generate("x", _req(), GenerationStats()))


def test_ollama_style_name_without_tag_is_served() -> None:
    routes = {"/v1/completions": fs.good_stream, "/v1/models": fs.models_listing("llama3:latest")}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "llama3", timeout=5.0) as handle:
        assert _collect(handle.generate("x", _req(), GenerationStats())) == "Hello world"


def test_server_without_a_model_listing_is_asked_once() -> None:
    routes = {"/v1/chat/completions": fs.model_not_found}  # and /v1/models answers 404
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        for _ in range(2):
            with pytest.raises(ServerResponseError, match=r"HTTP 404.*model 'm' not found"):
                _collect(handle.chat([{"role": "user", "content": "x"}], _req(), GenerationStats()))
        assert [r.path for r in srv.requests].count("/v1/models") == 1


def test_a_proxy_from_the_environment_never_carries_loopback_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``http_proxy`` pointing nowhere: a loopback server is still reached directly, and a
    remote URL would go through the proxy (the environment is trusted there)."""
    from langchain_setraf.backends.openai_compat import HTTPHandle

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    local = HTTPHandle("http://127.0.0.1:8080/v1", None, api_key=None, timeout=5, name="t")
    remote = HTTPHandle("http://gpu-box.example:8080/v1", None, api_key=None, timeout=5, name="t")
    try:
        assert local._client._trust_env is False
        assert remote._client._trust_env is True
    finally:
        local.close()
        remote.close()
