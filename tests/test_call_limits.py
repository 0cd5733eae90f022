"""``timeout`` and ``max_retries`` (LangChain's names) mean something wherever the model runs.

Over a server (a real loopback HTTP server that misbehaves on purpose), ``timeout`` is
``request_timeout`` and ``max_retries`` re-sends a request refused with 5xx or a refused
connection. In this process (the real SmolLM2-135M), ``timeout`` bounds the whole call,
the wait for a busy model included, and ``max_retries`` retries a call refused as busy.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from helpers import fault_server as fs
from helpers.threads import in_thread
from langchain_setraf import GGUFLLM, ChatGGUF, ChatTransformers, TransformersLLM
from langchain_setraf.backends.server_errors import ServerResponseError, ServerUnavailableError
from langchain_setraf.cache import CallTimeoutError, ModelBusyError, ModelCache

BOUND = 60.0  # seconds: only ever reached by a failing (hanging) test


def _tries(srv: fs.FaultServer) -> int:
    """Generation requests the server received (the model listing is not one)."""
    return sum(1 for r in srv.requests if r.path.endswith("completions"))


# -- every class takes them ---------------------------------------------------------------


@pytest.mark.parametrize("cls", [GGUFLLM, ChatGGUF])
def test_gguf_classes_take_langchains_standard_params(cls: Any) -> None:
    model = cls(temperature=0, max_tokens=100, timeout=60, stop=[], max_retries=2)
    assert (model.timeout, model.max_retries) == (60.0, 2)


@pytest.mark.parametrize("cls", [TransformersLLM, ChatTransformers])
def test_transformers_classes_take_langchains_standard_params(cls: Any) -> None:
    model = cls(model="/nonexistent", timeout=60, max_retries=0)  # constructors never load
    assert (model.timeout, model.max_retries) == (60.0, 0)


def test_defaults_are_no_limit_and_two_retries() -> None:
    chat = ChatGGUF()
    assert (chat.timeout, chat.max_retries) == (None, 2)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"timeout": 0}, "timeout must be > 0"),
        ({"timeout": -1.5}, "timeout must be > 0"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"max_retry": 1}, "did you mean 'max_retries'"),
    ],
)
def test_bad_limits_are_refused_by_name(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ChatGGUF(**kwargs)


# -- over a server: timeout is request_timeout ----------------------------------------------


def test_timeout_is_request_timeout_over_a_server() -> None:
    url = "http://127.0.0.1:9/v1"
    chat = ChatGGUF(server_url=url, timeout=5)
    assert chat._backend_and_spec()[1].options_dict["request_timeout"] == 5.0
    same = ChatGGUF(server_url=url, timeout=5, request_timeout=5)
    assert same._backend_and_spec()[1] == chat._backend_and_spec()[1]
    assert ChatGGUF(server_url=url)._backend_and_spec()[1].options_dict["request_timeout"] == 600
    with pytest.raises(ValueError, match="name one limit"):
        ChatGGUF(server_url=url, timeout=5, request_timeout=30)


def test_timeout_bounds_a_request_to_a_silent_server(cache: ModelCache) -> None:
    with fs.FaultServer({"/v1/chat/completions": fs.hang}) as srv:
        chat = ChatGGUF(server_url=srv.base_url, server_model="m", timeout=0.5)
        th, out = in_thread(lambda: chat.invoke("hi"))
        th.join(BOUND)
        assert not th.is_alive(), "the request outlived its timeout"
        err = out.get("error")
        assert isinstance(err, ServerUnavailableError), out
        assert err.timeout == 0.5
        assert _tries(srv) == 1  # a timeout is not retried: it would multiply it
        chat.release()


# -- over a server: max_retries re-sends a request refused before its first byte -------------


def test_one_retry_gets_past_one_503(cache: ModelCache) -> None:
    with fs.FaultServer({"/v1/chat/completions": fs.fail_first(1)}) as srv:
        chat = ChatGGUF(server_url=srv.base_url, server_model="m", max_retries=1)
        assert chat.invoke("hi").content == "Hello world"
        assert _tries(srv) == 2
        chat.release()


def test_no_retry_reports_the_503(cache: ModelCache) -> None:
    with fs.FaultServer({"/v1/chat/completions": fs.fail_first(1)}) as srv:
        chat = ChatGGUF(server_url=srv.base_url, server_model="m", max_retries=0)
        with pytest.raises(ServerResponseError, match="HTTP 503") as info:
            chat.invoke("hi")
        assert info.value.status == 503
        assert _tries(srv) == 1
        chat.release()


def test_retries_are_bounded_by_max_retries(cache: ModelCache) -> None:
    with fs.FaultServer({"/v1/completions": fs.fail_first(100, status=500)}) as srv:
        llm = GGUFLLM(server_url=srv.base_url, server_model="m", max_retries=2)
        with pytest.raises(ServerResponseError, match="HTTP 500"):
            llm.invoke("hi")
        assert _tries(srv) == 3  # the first try and two retries
        llm.release()


def test_a_4xx_is_never_retried(cache: ModelCache) -> None:
    with fs.FaultServer({"/v1/completions": fs.unauthorized}) as srv:
        llm = GGUFLLM(server_url=srv.base_url, server_model="m", max_retries=2)
        with pytest.raises(ServerResponseError, match="HTTP 401"):
            llm.invoke("hi")
        assert _tries(srv) == 1  # the answer would not change
        llm.release()


@pytest.mark.parametrize(("max_retries", "succeeds"), [(0, False), (1, True)])
def test_connections_closed_without_an_answer_are_retried(
    cache: ModelCache, max_retries: int, succeeds: bool
) -> None:
    # two answerless closes: the first is the pooled-connection case, always tried again
    # once; the second needs a retry of max_retries
    with fs.FaultServer({"/v1/completions": fs.fail_first(2, status=None)}) as srv:
        llm = GGUFLLM(server_url=srv.base_url, server_model="m", max_retries=max_retries)
        if succeeds:
            assert llm.invoke("hi") == "Hello world"
            assert _tries(srv) == 3
        else:
            with pytest.raises(ServerUnavailableError, match="without an answer"):
                llm.invoke("hi")
            assert _tries(srv) == 2
        llm.release()


def test_a_refused_connection_is_retried_then_reported(cache: ModelCache) -> None:
    # a port nothing listens on: every try is refused; the error names the URL
    with fs.FaultServer({}) as srv:
        url = srv.base_url
    llm = GGUFLLM(server_url=url, server_model="m", max_retries=1)
    with pytest.raises(ServerUnavailableError, match="cannot connect"):
        llm.invoke("hi")
    llm.release()


def test_a_stream_cut_after_its_first_byte_is_not_retried(cache: ModelCache) -> None:
    with fs.FaultServer({"/v1/completions": fs.truncated_close}) as srv:
        llm = GGUFLLM(server_url=srv.base_url, server_model="m", max_retries=2)
        with pytest.raises(ServerResponseError, match="truncated"):
            llm.invoke("hi")
        assert _tries(srv) == 1  # text was sent: a retry would repeat it
        llm.release()


# -- in this process: max_retries retries a model refused as busy -----------------------------


def _endless(**kwargs: Any) -> GGUFLLM:
    """A real model that never stops by itself (EOS banned), to hold the model open."""
    from langchain_setraf.backends.gguf.file import read_gguf_header
    from langchain_setraf.models import default_gguf_path

    eos = int(read_gguf_header(default_gguf_path()).metadata["tokenizer.ggml.eos_token_id"])
    return GGUFLLM(
        temperature=0,
        max_tokens=1500,
        n_ctx=2048,
        model_kwargs={"logit_bias": {eos: -100.0}},
        **kwargs,
    )


def _started_stream(llm: GGUFLLM) -> Any:
    stream = llm.stream("Tell me a long story about rocks.")
    assert next(stream), "the stream ended before it could be suspended"
    return stream


class _CloseOnRetry(logging.Handler):
    """Ends the holder's stream when a busy call announces its first retry."""

    def __init__(self, stream: Any) -> None:
        super().__init__(logging.WARNING)
        self.stream = stream
        self.retries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.retries.append(record.getMessage())
        self.stream.close()


@pytest.mark.slow
@pytest.mark.parametrize("max_retries", [0, 2])
def test_a_busy_model_is_retried_max_retries_times(cache: ModelCache, max_retries: int) -> None:
    holder = _endless()
    stream = _started_stream(holder)  # holds the model's generation lock
    caller = _endless(max_retries=max_retries)
    watcher = _CloseOnRetry(stream)
    log = logging.getLogger("langchain_setraf._cached")
    log.addHandler(watcher)
    cache.lock_timeout = 0.3
    try:
        th, out = in_thread(lambda: caller.invoke("Hi", max_tokens=3))
        th.join(BOUND)
        assert not th.is_alive(), "a busy model made a call hang"
    finally:
        log.removeHandler(watcher)
        stream.close()
        cache.lock_timeout = 600.0
    if max_retries == 0:
        assert isinstance(out.get("error"), ModelBusyError), out
        assert watcher.retries == []
    else:
        # refused once as busy, the holder let go during the backoff: the retry generated
        assert isinstance(out.get("value"), str), out
        assert len(watcher.retries) == 1
        assert "retry 1 of 2" in watcher.retries[0]


# -- in this process: timeout bounds the whole call ------------------------------------------


@pytest.mark.slow
def test_timeout_stops_a_long_generation_and_releases_the_model(cache: ModelCache) -> None:
    llm = _endless(timeout=1.0)
    got: list[str] = []
    with pytest.raises(CallTimeoutError, match="while generating") as info:
        for piece in llm.stream("Tell me a long story about rocks."):
            got.append(piece)
            threading.Event().wait(0.2)  # a slow reader: the call is what is bounded
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == 1.0
    assert len(got) < 1500  # stopped long before max_tokens (a reader needs 300 s for them)
    (model,) = cache.loaded()
    assert model.active == 0  # nothing left half-held
    assert isinstance(_endless().invoke("Hi", max_tokens=2), str)


@pytest.mark.slow
def test_timeout_bounds_the_wait_for_a_busy_model(cache: ModelCache) -> None:
    holder = _endless()
    stream = _started_stream(holder)  # lock_timeout stays 600 s: only timeout can end this
    try:
        chat = ChatGGUF(temperature=0, max_tokens=2, n_ctx=2048, timeout=0.5, max_retries=2)
        th, out = in_thread(lambda: chat.invoke("Hi"))
        th.join(BOUND)
        assert not th.is_alive(), "timeout did not bound the wait for a busy model"
        err = out.get("error")
        assert isinstance(err, CallTimeoutError), out
        assert "waiting for the busy model" in str(err)
        assert next(stream)  # the holder was never disturbed
    finally:
        stream.close()
    (model,) = cache.loaded()
    assert model.active == 0
    free = ChatGGUF(temperature=0, max_tokens=2, n_ctx=2048, max_retries=0)
    assert isinstance(free.invoke("Hi").content, str)  # the model is free again


@pytest.mark.parametrize(
    ("kwargs", "request_timeout"),
    [({"timeout": 5.0, "max_retries": 0}, 5.0), ({"request_timeout": 7.0}, 7.0)],
)
def test_the_chat_twin_of_an_attached_llm_keeps_its_limits(
    kwargs: dict[str, Any], request_timeout: float
) -> None:
    llm = GGUFLLM(server_url="http://127.0.0.1:9/v1", **kwargs)
    twin = llm.as_chat_model()
    assert isinstance(twin, ChatGGUF)
    assert (twin.timeout, twin.max_retries) == (llm.timeout, llm.max_retries)
    assert twin._backend_and_spec()[1] == llm._backend_and_spec()[1]  # the same handle
    assert twin._backend_and_spec()[1].options_dict["request_timeout"] == request_timeout
