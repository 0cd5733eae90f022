"""Hostile input refused on the client side (issue 21, attacks 4, 6, 11 and 12).

- 12: a server that sends ``: ping`` every second cannot keep a ``request_timeout=2``
  request alive; a 400 MB event-stream line or JSON body is refused early, with the URL and
  the limit, and the client's memory stays bounded (peak RSS of a fresh child process).
- 6: ``SETRAF_API_KEY`` goes only to the origin it is bound to; a request to another
  origin is refused before anything is sent.
- 11: a model file whose chat template is ``{{'A'*300000000}}`` or two nested
  ``range(100000)`` loops fails fast with :class:`ChatTemplateError` naming the file and
  the limit, in bounded memory; real templates render exactly as before.
- 4: the Streamlit app keeps uploads under a safe base name in one private directory per
  session, never accumulates copies across reruns, refuses oversized uploads, and a typed
  model URL never receives the key.

Every server here is a real loopback server (``helpers.fault_server``); every child process
runs under a subprocess timeout.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import langchain_setraf
from helpers import fault_server as fs
from helpers.malformed_gguf import gguf_with_chat_template
from helpers.mistral_gguf import MISTRAL_V02_TEMPLATE
from langchain_setraf.backends.base import GenerationRequest, GenerationStats
from langchain_setraf.backends.chat_template import (
    MAX_TEMPLATE_ITERATIONS,
    ChatTemplateError,
    render_chat_template,
)
from langchain_setraf.backends.gguf.file import read_gguf_header
from langchain_setraf.backends.gguf.vocabulary import render_gguf_prompt
from langchain_setraf.backends.http_limits import MAX_BODY_BYTES, MAX_SSE_LINE_BYTES
from langchain_setraf.backends.openai_compat import (
    APIKeyOriginError,
    HTTPHandle,
    OpenAICompatBackend,
    api_key_for,
    origin_of,
)
from langchain_setraf.backends.server_errors import ResponseTooLargeError, ServerUnavailableError
from langchain_setraf.models import default_gguf_path

TESTS = Path(__file__).resolve().parents[1]
SRC = Path(langchain_setraf.__file__).resolve().parents[1]
#: Peak RSS a child may add while refusing a hostile answer or template (MiB); the attacks
#: cost 400 MB (answers) and 1.16 GB (template) without the limits.
RSS_GROWTH_MIB = 64
#: Wall-clock guard on each child process (seconds; never reached when green).
CHILD_TIMEOUT = 180


def _req() -> GenerationRequest:
    return GenerationRequest(params={"temperature": 0.0, "max_tokens": 8})


def _child(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (src and tests on its path); it prints one JSON
    line, the result."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS)]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_HTTP_CHILD = """
import json, resource, time
from helpers import fault_server as fs
from langchain_setraf.backends.base import GenerationRequest, GenerationStats
from langchain_setraf.backends.openai_compat import HTTPHandle

route, call, timeout = {route!r}, {call!r}, {timeout!r}
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
path = "/tokenize" if call == "tokenize" else "/v1/completions"
with fs.FaultServer({{path: getattr(fs, route)}}) as srv:
    handle = HTTPHandle(srv.base_url, "m", timeout=float(timeout))
    before, t0 = peak(), time.monotonic()
    try:
        if call == "tokenize":
            handle.tokenize("x")
        else:
            for _ in handle.generate("x", GenerationRequest(params={{}}), GenerationStats()):
                pass
        error = None
    except Exception as exc:
        error = exc
    elapsed = time.monotonic() - t0
    handle.close()
    print(json.dumps({{
        "type": type(error).__name__, "mro": [c.__name__ for c in type(error).__mro__],
        "message": str(error), "elapsed": elapsed, "growth": peak() - before,
        "url": srv.root, "limit": getattr(error, "limit", None),
    }}))
"""


def _http_child(route: str, call: str, timeout: float) -> dict[str, Any]:
    return _child(_HTTP_CHILD.format(route=route, call=call, timeout=timeout))


# -- 12: deadline and sizes ------------------------------------------------------------------


def test_a_pinging_server_cannot_keep_a_request_past_request_timeout() -> None:
    """The server pings every second for 30 s: the read timeout alone never fires."""
    out = _http_child("pinging_stream", "generate", 2.0)
    assert out["type"] == "ServerUnavailableError", out
    assert "request_timeout=2 s" in out["message"]
    assert "middle of a stream" in out["message"]
    assert out["url"] in out["message"]
    assert out["elapsed"] < 10.0, f"the request ran {out['elapsed']:.1f} s past a 2 s deadline"


def test_request_timeout_is_a_total_deadline_through_the_langchain_class(cache: Any) -> None:
    from langchain_setraf import GGUFLLM

    with fs.FaultServer({"/v1/completions": fs.pinging_stream}) as srv:
        llm = GGUFLLM(server_url=srv.root, server_model="m", request_timeout=1.5)
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailableError, match=r"request_timeout=1.5 s") as info:
            llm.invoke("x")
        elapsed = time.monotonic() - t0
        llm.release()
    assert info.value.timeout == 1.5
    assert elapsed < 10.0, f"the request ran {elapsed:.1f} s past a 1.5 s deadline"


def test_a_400_mb_event_stream_line_is_refused_in_bounded_memory() -> None:
    out = _http_child("giant_line", "generate", 120.0)
    assert out["type"] == "ResponseTooLargeError", out
    assert "ServerResponseError" in out["mro"]
    assert out["limit"] == MAX_SSE_LINE_BYTES
    assert f"{out['url']}/v1/completions" in out["message"]
    assert f"{MAX_SSE_LINE_BYTES:,} bytes" in out["message"]
    assert out["growth"] < RSS_GROWTH_MIB << 20, f"peak RSS grew {out['growth'] >> 20} MiB"


def test_a_400_mb_json_answer_is_refused_in_bounded_memory() -> None:
    out = _http_child("giant_body", "tokenize", 120.0)
    assert out["type"] == "ResponseTooLargeError", out
    assert out["limit"] == MAX_BODY_BYTES
    assert f"{out['url']}/tokenize" in out["message"]
    assert out["growth"] < (MAX_BODY_BYTES >> 20) + RSS_GROWTH_MIB << 20


def test_the_too_large_error_is_a_server_response_error_naming_url_and_limit() -> None:
    from langchain_setraf import ResponseTooLargeError as Exported
    from langchain_setraf import ServerResponseError

    assert Exported is ResponseTooLargeError and issubclass(Exported, ServerResponseError)
    with fs.FaultServer({"/v1/completions": fs.giant_line}) as srv:
        with HTTPHandle(srv.base_url, "m", timeout=60.0) as handle:
            with pytest.raises(ResponseTooLargeError, match="4,194,304 bytes") as info:
                "".join(handle.generate("x", _req(), GenerationStats()))
    assert info.value.url == srv.base_url + "/completions"
    assert info.value.limit == MAX_SSE_LINE_BYTES


def test_a_well_behaved_stream_still_arrives_whole() -> None:
    """The bounded reader keeps every piece, pings, multi-line events and usage."""
    routes = {"/v1/completions": fs.good_stream, "/v1/chat/completions": fs.multiline_events}
    with fs.FaultServer(routes) as srv, HTTPHandle(srv.base_url, "m", timeout=5.0) as handle:
        stats = GenerationStats()
        assert "".join(handle.generate("x", _req(), stats)) == "Hello world"
        assert (stats.prompt_tokens, stats.completion_tokens) == (5, 2)
        chat = handle.chat([{"role": "user", "content": "x"}], _req(), GenerationStats())
        assert "".join(chat) == "Hi"


# -- 6: the API key goes to its own origin only ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://LocalHost:8080/v1", "http://localhost:8080"),
        ("https://gpu-box.example/v1", "https://gpu-box.example:443"),
        ("http://gpu-box.example", "http://gpu-box.example:80"),
        ("http://[::1]:9/v1", "http://[::1]:9"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_the_key_is_sent_to_the_origin_it_is_bound_to(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = OpenAICompatBackend()
    with fs.FaultServer({"/v1/completions": fs.unauthorized}) as srv:
        monkeypatch.setenv("SETRAF_API_KEY", "good-key")
        monkeypatch.setenv("SETRAF_API_KEY_ORIGIN", srv.root + "/v1")
        handle = backend.load(backend.spec_for(srv.base_url, server_model="m"))
        try:
            assert "".join(handle.generate("x", _req(), GenerationStats())) == "Hello world"
        finally:
            handle.close()
        assert srv.requests[-1].headers["authorization"] == "Bearer good-key"


def test_a_key_bound_elsewhere_is_never_sent_and_the_request_is_refused(
    monkeypatch: pytest.MonkeyPatch, cache: Any
) -> None:
    from langchain_setraf import ChatGGUF

    monkeypatch.setenv("SETRAF_API_KEY", "sk-for-the-gpu-box")
    monkeypatch.setenv("SETRAF_API_KEY_ORIGIN", "https://gpu-box.example:8443")
    with fs.FaultServer({"/v1/chat/completions": fs.good_stream}) as srv:
        chat = ChatGGUF(server_url=srv.root, server_model="m")
        with pytest.raises(APIKeyOriginError) as info:
            chat.invoke("hi")
        chat.release()
        assert srv.requests == [], "a request went out although the key may not go there"
    message = str(info.value)
    assert "https://gpu-box.example:8443" in message and origin_of(srv.root) in message
    assert "SETRAF_API_KEY_ORIGIN" in message
    assert "sk-for-the-gpu-box" not in message


def test_an_unbound_key_never_goes_to_a_typed_remote_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETRAF_API_KEY", "sk-local")
    monkeypatch.delenv("SETRAF_API_KEY_ORIGIN", raising=False)
    backend = OpenAICompatBackend()
    spec = backend.spec_for("http://attacker.example:8080/v1", server_model="m")
    with pytest.raises(APIKeyOriginError, match=r"SETRAF_API_KEY_ORIGIN=http://attacker"):
        backend.load(spec)
    # loopback servers (the managed server, a local Ollama) still get an unbound key
    assert api_key_for("http://127.0.0.1:8080/v1", "SETRAF_API_KEY") == "sk-local"
    # without a key nothing is refused and nothing is sent
    assert api_key_for("http://attacker.example:8080/v1", "SETRAF_UNSET_VARIABLE") is None


def test_a_bad_origin_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"K": "secret", "K_ORIGIN": "gpu-box:8443"}
    with pytest.raises(APIKeyOriginError, match=r"K_ORIGIN='gpu-box:8443' is not an http"):
        api_key_for("http://127.0.0.1:1/v1", "K", env)


# -- api_key= given to the class (LangChain's argument) -----------------------------------------

#: A key only these tests know: it must never show up anywhere but the server's header.
SECRET = "sk-only-the-server-may-see-this-7f3a"


def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SETRAF_API_KEY", raising=False)
    monkeypatch.delenv("SETRAF_API_KEY_ORIGIN", raising=False)


def test_api_key_given_to_the_class_is_the_servers_bearer_key(
    monkeypatch: pytest.MonkeyPatch, cache: Any
) -> None:
    from langchain_setraf import GGUFLLM, ChatGGUF, ServerResponseError

    _no_env_key(monkeypatch)
    monkeypatch.setenv("SETRAF_API_KEY", "the-environment-key")  # api_key= takes its place
    routes = {"/v1/completions": fs.unauthorized, "/v1/chat/completions": fs.unauthorized}
    with fs.FaultServer(routes) as srv:
        chat = ChatGGUF(server_url=srv.base_url, server_model="m", api_key="good-key")
        assert chat.invoke("hi").content == "Hello world"
        llm = GGUFLLM(server_url=srv.base_url, server_model="m", api_key="good-key")
        assert llm.invoke("hi") == "Hello world"
        # the chat twin shares the key; a wrong key gets the server's 401, not the right key
        assert llm.as_chat_model().invoke("hi").content == "Hello world"
        wrong = ChatGGUF(server_url=srv.base_url, server_model="m", api_key="wrong-key")
        with pytest.raises(ServerResponseError, match="401"):
            wrong.invoke("hi")
        for obj in (chat, llm, wrong):
            obj.release()
    sent = [
        (r.path, r.headers.get("authorization"))
        for r in srv.requests
        if r.path != "/v1/models"  # each handle's one check of the model name, keyed too
    ]
    assert sent == [
        ("/v1/chat/completions", "Bearer good-key"),
        ("/v1/completions", "Bearer good-key"),
        ("/v1/chat/completions", "Bearer good-key"),
        ("/v1/chat/completions", "Bearer wrong-key"),
    ]
    assert all(r.headers.get("authorization") for r in srv.requests)


def test_api_key_given_to_the_class_follows_the_origin_binding(
    monkeypatch: pytest.MonkeyPatch, cache: Any
) -> None:
    from langchain_setraf import ChatGGUF

    _no_env_key(monkeypatch)
    # unbound: loopback servers only; a typed remote URL is refused before anything is sent
    remote = ChatGGUF(server_url="http://attacker.example:8080/v1", api_key=SECRET)
    with pytest.raises(APIKeyOriginError) as info:
        remote.invoke("hi")
    message = str(info.value)
    assert "the api_key given to the class is bound to no origin" in message
    assert "SETRAF_API_KEY_ORIGIN=http://attacker.example:8080" in message
    assert SECRET not in message
    # bound elsewhere: a loopback server does not get it either
    monkeypatch.setenv("SETRAF_API_KEY_ORIGIN", "https://gpu-box.example:8443")
    with fs.FaultServer({"/v1/chat/completions": fs.good_stream}) as srv:
        local = ChatGGUF(server_url=srv.base_url, server_model="m", api_key=SECRET)
        with pytest.raises(APIKeyOriginError, match=r"bound to https://gpu-box\.example:8443"):
            local.invoke("hi")
        local.release()
        assert srv.requests == [], "a request went out although the key may not go there"
    # bound to this server: sent
    with fs.FaultServer({"/v1/chat/completions": fs.unauthorized}) as srv:
        monkeypatch.setenv("SETRAF_API_KEY_ORIGIN", srv.root)
        bound = ChatGGUF(server_url=srv.base_url, server_model="m", api_key="good-key")
        assert bound.invoke("hi").content == "Hello world"
        bound.release()


def test_api_key_refused_where_it_cannot_mean_what_it_says() -> None:
    from langchain_setraf import GGUFLLM, ChatGGUF

    for cls in (GGUFLLM, ChatGGUF):
        with pytest.raises(ValueError, match="api_key and api_key_env='MY_KEY' both") as info:
            cls(server_url="http://127.0.0.1:9/v1", api_key=SECRET, api_key_env="MY_KEY")
        assert SECRET not in str(info.value)
        with pytest.raises(ValueError, match="server=True: the host's managed") as info:
            cls(server=True, api_key=SECRET)
        assert SECRET not in str(info.value)
        with pytest.raises(ValueError, match="api_key must be a non-empty string"):
            cls(server_url="http://127.0.0.1:9/v1", api_key="")
        # any refused construction hides its arguments (pydantic quotes them otherwise)
        with pytest.raises(ValueError) as info:
            cls(api_key=SECRET, n_ctx="many")
        assert SECRET not in str(info.value)


def test_the_key_never_shows_in_a_repr_a_log_a_dump_or_a_trace(
    monkeypatch: pytest.MonkeyPatch, cache: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.load import dumpd, dumps

    from langchain_setraf import ChatGGUF, get_model_cache

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            self.seen.append(json.dumps([serialized, kw], default=repr))

        def on_llm_start(self, serialized: Any, prompts: Any, **kw: Any) -> None:
            self.seen.append(json.dumps([serialized, kw], default=repr))

        def on_llm_end(self, response: Any, **kw: Any) -> None:
            self.seen.append(repr(response))

    _no_env_key(monkeypatch)
    caplog.set_level(logging.DEBUG)  # every logger, httpx's included
    recorder = Recorder()
    with fs.FaultServer({"/v1/chat/completions": fs.good_stream}) as srv:
        chat = ChatGGUF(server_url=srv.base_url, server_model="m", api_key=SECRET)
        chat.invoke("hi", config={"callbacks": [recorder]})
        "".join(str(c.content) for c in chat.stream("hi", config={"callbacks": [recorder]}))
        [model] = get_model_cache().loaded()
        spec = model.key
        shown = [
            repr(chat),
            str(chat),
            chat.model_dump_json(),
            str(chat.model_dump()),
            json.dumps(dumpd(chat)),
            dumps(chat),
            repr(spec),
            spec.describe(),
            json.dumps(model.options, default=str),
            repr(model),
            caplog.text,
            *recorder.seen,
        ]
        chat.release()
    assert srv.requests and all(
        r.headers.get("authorization") == f"Bearer {SECRET}" for r in srv.requests
    ), "the key did not reach the server"
    assert recorder.seen and "**********" in repr(chat)
    leaks = [text[:200] for text in shown if SECRET in text]
    assert not leaks, f"the key leaked: {leaks}"


# -- 11: chat templates bounded in time and size -----------------------------------------------

_TEMPLATE_CHILD = """
import json, resource, time
from langchain_setraf.backends.chat_template import ChatTemplateError
from langchain_setraf.backends.gguf.vocabulary import render_gguf_prompt
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
import jinja2.sandbox  # loaded before the baseline
before, t0 = peak(), time.monotonic()
try:
    render_gguf_prompt({path!r}, [{{"role": "user", "content": "hi"}}])
    error = None
except Exception as exc:
    error = exc
print(json.dumps({{"type": type(error).__name__, "message": str(error),
                  "elapsed": time.monotonic() - t0, "growth": peak() - before}}))
"""

HOSTILE_TEMPLATES = {
    "repeat-300MB": ("{{'A'*300000000}}", "300,000,000 characters"),
    "nested-range": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        f"{MAX_TEMPLATE_ITERATIONS:,} loop iterations",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TEMPLATES))
def test_a_hostile_gguf_template_fails_fast_in_bounded_memory(case: str, tmp_path: Path) -> None:
    template, limit_text = HOSTILE_TEMPLATES[case]
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(gguf_with_chat_template(template))
    out = _child(_TEMPLATE_CHILD.format(path=str(path)))
    assert out["type"] == "ChatTemplateError", out
    assert str(path) in out["message"]
    assert limit_text in out["message"]
    assert out["growth"] < RSS_GROWTH_MIB << 20, f"peak RSS grew {out['growth'] >> 20} MiB"
    assert out["elapsed"] < 30.0


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("{{ 'A'|center(300000000) }}", "'center' filter"),
        ("{{ ('A'*100000)|list|join('B'*100000) }}", "'join' filter's result"),
        ("{{ ('A'*100000).replace('', 'B'*1000) }}", "replace"),
        ("{{ ('\\n'*900000)|indent(1000) }}", "'indent' filter's result"),
        ("{{ 'x'.ljust(300000000) }}", "ljust"),
        ("{{ '%300000000s' % 'a' }}", "field width"),
        ("{{ '{:>300000000}'.format('a') }}", "field width"),
        ("{{ '%300000000s'|format('a') }}", "field width"),
        ("{{ '%*s' % (300000000, 'a') }}", "'%' format"),
        ("{{ '{:>{w}}'.format('a', w=300000000) }}", "format()"),
        ("{{ [1]|batch(100000000, 'x')|list }}", "'batch' filter"),
        ("{{ 2**(2**20) }}", "MAX_TEMPLATE_INT_BITS"),
        ("{{ range(10**9)|list }}", "MAX_TEMPLATE_RANGE"),
        (
            "{% set ns = namespace(s='AB') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "concatenation",
        ),
        (
            "{% set s = 'A'*100000 %}{% for c in s %}{% for d in s %}{% endfor %}{% endfor %}",
            "loop iterations",
        ),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RecursionError"),
        ("{{ lipsum(1000000) }}", "'lipsum' is undefined"),
        ("{{ ''.__class__.__mro__ }}", "sandbox"),
    ],
)
def test_template_amplifications_are_refused(template: str, match: str) -> None:
    with pytest.raises(ChatTemplateError, match=match) as info:
        render_chat_template(template, [{"role": "user", "content": "hi"}], source="t.gguf")
    assert "t.gguf" in str(info.value)


def test_large_numbers_in_text_and_values_are_not_sizes() -> None:
    """Only widths and counts are checked: a timestamp is just a number."""
    template = (
        "{{ 1700000000|int }} {{ '%s at %d' % ('t', 1700000000) }} "
        "{{ '{} tokens'.format(1700000000) }} {{ 'id 1700000000: %s'|format('x') }} "
        "{{ 'at 1700000000 {}'.format('y') }}"
    )
    assert render_chat_template(template, []) == (
        "1700000000 t at 1700000000 1700000000 tokens id 1700000000: x at 1700000000 y"
    )


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)


def _templates() -> Iterator[tuple[str, str, bool]]:
    smollm2 = str(read_gguf_header(default_gguf_path()).chat_template)
    yield "smollm2", smollm2, True
    yield "smollm2", smollm2, False
    yield "mistral-v0.2", MISTRAL_V02_TEMPLATE, True
    yield "mistral-v0.2", MISTRAL_V02_TEMPLATE, False
    yield "gemma-2", GEMMA_TEMPLATE, False  # Gemma's template refuses a system message


@pytest.mark.parametrize(("name", "template", "system"), list(_templates()))
def test_real_templates_render_exactly_as_the_plain_sandbox(
    name: str, template: str, system: bool
) -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    turns = [
        {"role": "user", "content": "Resistivity of clay?"},
        {"role": "assistant", "content": "Low: 1-100 Ω·m."},
        {"role": "user", "content": "And dry sand? " * 50},
    ]
    messages = ([{"role": "system", "content": "Be brief."}] if system else []) + turns
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    plain.globals["raise_exception"] = lambda m: (_ for _ in ()).throw(ValueError(m))
    expected = plain.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token="<s>", eos_token="</s>"
    )
    got = render_chat_template(template, messages, bos_token="<s>", eos_token="</s>")
    assert got == expected
    assert "dry sand" in got


def test_a_template_raise_still_names_its_message() -> None:
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        render_chat_template(GEMMA_TEMPLATE, [{"role": "system", "content": "x"}])


def test_a_long_real_conversation_is_within_the_limits() -> None:
    """The size limit grows with the messages: a 3 MB conversation renders whole."""
    template = str(read_gguf_header(default_gguf_path()).chat_template)
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i} " + "ρ " * 15_000}
        for i in range(100)
    ]
    prompt = render_chat_template(template, messages)
    assert len(prompt) > sum(len(m["content"]) for m in messages)


def test_the_real_gguf_renders_and_chat_template_error_is_exported() -> None:
    prompt = render_gguf_prompt(default_gguf_path(), [{"role": "user", "content": "hi"}])
    assert prompt.endswith("<|im_start|>assistant\n") and "hi" in prompt
    assert langchain_setraf.ChatTemplateError is ChatTemplateError
    assert issubclass(ChatTemplateError, ValueError)


# -- 4: the Streamlit app's uploads and typed URL ----------------------------------------------

APP = TESTS.parent / "examples" / "streamlit_app.py"
SURVEY = "gimli_slagdump.ohm"
FLAT_SAMPLE = "two_layer_wenner.dat"


@pytest.fixture()
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Python's temporary directory for the test: where the app makes its upload dirs."""
    import tempfile

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _app(monkeypatch: pytest.MonkeyPatch, ert_dir: Path) -> Any:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SETRAF_ERT_DIR", str(ert_dir))
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("hostile", ["absolute", "dotdot", "backslashes", "dots-only"])
def test_an_upload_name_never_leaves_the_sessions_private_dir(
    hostile: str,
    tmp_path: Path,
    temp_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    ert_dir: Path,
    cache: Any,
) -> None:
    outside = tmp_path / "victim"
    outside.mkdir()
    name, stored = {
        "absolute": (str(outside / SURVEY), SURVEY),  # Path(dir) / "/abs" is "/abs"
        "dotdot": (f"../../victim/{SURVEY}", SURVEY),
        "backslashes": (f"..\\..\\victim\\{SURVEY}", SURVEY),
        "dots-only": ("..", "upload"),
    }[hostile]
    app = _app(monkeypatch, ert_dir)
    app.file_uploader(key="upload").upload(name, (ert_dir / SURVEY).read_bytes()).run()
    assert not app.exception, app.exception
    assert _files(outside) == [], "the upload was written outside the app's directory"
    upload_dir = app.session_state["upload_dir"].path
    assert upload_dir.parent == temp_root
    assert stat.S_IMODE(upload_dir.stat().st_mode) == 0o700
    assert _files(tmp_path) == [upload_dir / stored]
    assert stat.S_IMODE((upload_dir / stored).stat().st_mode) == 0o600
    if hostile != "dots-only":  # the stored file is the survey, read as such
        assert app.code, "the uploaded survey was not read"


def test_reruns_keep_one_copy_and_a_new_upload_replaces_it(
    tmp_path: Path, temp_root: Path, monkeypatch: pytest.MonkeyPatch, ert_dir: Path, cache: Any
) -> None:
    import gc

    app = _app(monkeypatch, ert_dir)
    app.file_uploader(key="upload").upload(SURVEY, (ert_dir / SURVEY).read_bytes()).run()
    for _ in range(4):
        app.run()
    [upload_dir] = list(temp_root.iterdir())
    assert _files(temp_root) == [upload_dir / SURVEY]
    app.file_uploader(key="upload").upload(
        FLAT_SAMPLE, (APP.parent / FLAT_SAMPLE).read_bytes()
    ).run()
    app.run()
    assert _files(temp_root) == [upload_dir / FLAT_SAMPLE], "the replaced upload was kept"
    # the session ends: its state (and the directory with it) goes
    del app
    gc.collect()
    assert list(temp_root.iterdir()) == [], "the session's upload dir outlived the session"


def test_an_oversized_upload_is_refused_with_a_message(
    temp_root: Path, monkeypatch: pytest.MonkeyPatch, ert_dir: Path, cache: Any
) -> None:
    app = _app(monkeypatch, ert_dir)
    app.radio(key="lang").set_value("en").run()
    big = b"0" * (50 * 2**20 + 1)
    app.file_uploader(key="upload").upload("huge.dat", big).run()
    assert not app.exception, app.exception
    assert [e.value for e in app.error] == [
        "File 'huge.dat' refused: 52,428,801 bytes, over the 50 MB limit."
    ]
    assert _files(temp_root) == [], "a refused upload was written"
    assert not app.code, "a refused upload was read"


def test_a_url_typed_in_the_app_never_receives_the_key(
    monkeypatch: pytest.MonkeyPatch, ert_dir: Path, cache: Any
) -> None:
    monkeypatch.setenv("SETRAF_API_KEY", "sk-for-the-gpu-box")
    monkeypatch.setenv("SETRAF_API_KEY_ORIGIN", "https://gpu-box.example:8443")
    with fs.FaultServer({"/v1/chat/completions": fs.good_stream}) as srv:
        app = _app(monkeypatch, ert_dir)
        app.selectbox(key="backend").set_value("openai").run()
        app.text_input(key="model-openai").set_value(srv.base_url).run()
        app.selectbox(key="sample").set_value(FLAT_SAMPLE).run()
        app.button(key="interpret").click().run()
        assert not app.exception, app.exception
        assert srv.requests == [], "the typed URL was contacted"
    [error] = [e.value for e in app.error]
    assert "APIKeyOriginError" in error and "https://gpu-box.example:8443" in error
    assert "sk-for-the-gpu-box" not in error
