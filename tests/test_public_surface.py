"""The public surface that ``serve/``, ``ert/`` and plugin authors use instead of private names.

- ``CachedLLM`` and ``LocalChatModel`` are exported from the package root.
- ``as_chat_model()`` returns the chat twin: same arguments, same load spec, so one cache
  entry and one load; an argument the twin has no counterpart for is refused, not dropped.
- ``stream_with_usage()``/``astream_with_usage()`` end with a chunk carrying usage.
- ``prompt_token_ids()`` counts what the engine is given, without a load.
- ``TransformersLLM.max_new_tokens`` is a deprecated alias of ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.outputs import GenerationChunk

import langchain_setraf
from langchain_setraf import (
    GGUFLLM,
    CachedLLM,
    ChatGGUF,
    ChatTransformers,
    LocalChatModel,
    TransformersLLM,
)
from langchain_setraf.backends.base import GenerationRequest, LoadSpec
from langchain_setraf.cache import ModelCache

PROMPT = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


def test_the_plugin_base_classes_are_exported_from_the_root() -> None:
    assert {"CachedLLM", "LocalChatModel"} <= set(langchain_setraf.__all__)
    assert issubclass(GGUFLLM, CachedLLM) and issubclass(TransformersLLM, CachedLLM)
    assert issubclass(ChatGGUF, LocalChatModel) and issubclass(ChatTransformers, LocalChatModel)
    assert GGUFLLM.chat_model_class is ChatGGUF
    assert TransformersLLM.chat_model_class is ChatTransformers


# -- as_chat_model ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (
            GGUFLLM,
            {
                "temperature": 0.2,
                "top_k": 7,
                "max_tokens": 9,
                "seed": 3,
                "stop": ["###"],
                "n_ctx": 1024,
                "repack": False,
                "keep_alive": 60.0,
                "timeout": 30.0,
                "max_retries": 1,
                "model_kwargs": {"presence_penalty": 0.5},
            },
        ),
        (GGUFLLM, {"server_url": "http://127.0.0.1:9/v1", "request_timeout": 7.0}),
        (GGUFLLM, {"server_url": "http://127.0.0.1:9/v1", "timeout": 5.0, "max_retries": 0}),
        (
            TransformersLLM,
            {
                "model": "/models/checkpoint",
                "quantization": "nf4",
                "temperature": 0.3,
                "max_tokens": 12,
                "repetition_penalty": 1.0,
                "keep_alive": 0.0,
            },
        ),
    ],
    ids=["gguf", "gguf-url-request-timeout", "gguf-url-timeout", "transformers"],
)
def test_as_chat_model_carries_every_argument(cls: type[CachedLLM], kwargs: dict[str, Any]) -> None:
    llm = cls(**kwargs)
    chat = llm.as_chat_model()
    assert type(chat) is cls.chat_model_class
    assert {k: getattr(chat, k) for k in kwargs} == {k: getattr(llm, k) for k in kwargs}
    assert llm.model_fields_set <= chat.model_fields_set  # (LangChain sets "profile" itself)
    if cls is GGUFLLM and "server_url" not in kwargs:
        assert chat._backend_and_spec()[1] == llm._backend_and_spec()[1]  # one cache key


def test_as_chat_model_of_a_url_keeps_the_request_timeout() -> None:
    llm = GGUFLLM(server_url="http://127.0.0.1:9/v1", timeout=5.0)
    chat = llm.as_chat_model()
    spec = chat._backend_and_spec()[1]
    assert spec == llm._backend_and_spec()[1]
    assert spec.options_dict["request_timeout"] == 5.0


def test_as_chat_model_refuses_an_argument_the_twin_lacks() -> None:
    llm = TransformersLLM(model="/models/checkpoint", do_sample=False, model_kwargs={"a": 1})
    with pytest.raises(ValueError, match=r"do_sample, model_kwargs have no counterpart in Chat"):
        llm.as_chat_model()


class _NoTwin(CachedLLM):
    """An LLM class whose backend has no chat model (like the ngram plugin)."""

    @property
    def _llm_type(self) -> str:
        return "no-twin"

    def _generation_request(
        self, stop: list[str] | None, overrides: dict[str, Any]
    ) -> GenerationRequest:
        return GenerationRequest(params={}, stop=stop)

    def _model_name(self) -> str:
        return "no-twin"

    def _backend_and_spec(self) -> tuple[Any, LoadSpec]:
        raise AssertionError("as_chat_model must not look at the model")


def test_as_chat_model_of_a_class_without_a_twin_says_so() -> None:
    with pytest.raises(TypeError, match="_NoTwin has no chat model twin"):
        _NoTwin().as_chat_model()


# -- max_new_tokens -> max_tokens ---------------------------------------------------------------
def test_max_new_tokens_is_a_deprecated_alias_of_max_tokens() -> None:
    with pytest.warns(DeprecationWarning, match="max_new_tokens is deprecated.*0.5.0") as rec:
        llm = TransformersLLM(model="/models/checkpoint", max_new_tokens=7)
    assert rec[0].filename == __file__  # the warning points at the caller's line
    assert llm.max_tokens == 7 and "max_tokens" in llm.model_fields_set
    with pytest.warns(DeprecationWarning, match="use max_tokens"):
        assert llm.max_new_tokens == 7
    with pytest.warns(DeprecationWarning, match="max_new_tokens is deprecated"):
        params = llm._generate_params({"max_new_tokens": 3})
    assert params["max_new_tokens"] == 3  # transformers' own name, given to generate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TransformersLLM(model="/m", max_tokens=5)._generate_params({})["max_new_tokens"] == 5


def test_max_tokens_and_max_new_tokens_that_differ_are_refused() -> None:
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ValueError, match="max_tokens=4 and max_new_tokens=5 name one limit"),
    ):
        TransformersLLM(model="/m", max_new_tokens=5, max_tokens=4)


# -- with the real model ------------------------------------------------------------------------
@pytest.mark.slow
def test_the_chat_twin_shares_one_cache_entry(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=8, n_ctx=1024, seed=1, keep_alive=600)
    chat = llm.as_chat_model()
    assert llm.invoke(PROMPT).strip()
    assert chat.is_loaded  # the twin sees the weights its LLM loaded
    msg = chat.invoke("Name one colour.")
    assert isinstance(msg.content, str) and msg.content.strip()
    assert cache.total_loads == 1
    (model,) = cache.loaded()
    assert model.users == 2
    assert chat.release() and not llm.is_loaded


@pytest.mark.slow
def test_streams_with_usage_end_with_the_usage_chunk(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=8)
    *pieces, last = list(llm.stream_with_usage(PROMPT))
    assert all(isinstance(c, GenerationChunk) and c.generation_info is None for c in pieces)
    text = "".join(c.text for c in pieces)
    assert text.strip() and text == llm.invoke(PROMPT)
    info = last.generation_info or {}
    assert last.text == ""
    assert info["prompt_tokens"] == len(llm.prompt_token_ids(PROMPT))
    assert 0 < info["completion_tokens"] <= 8
    assert info["total_tokens"] == info["prompt_tokens"] + info["completion_tokens"]
    assert info["finish_reason"] in {"stop", "length"}

    async def collect() -> list[GenerationChunk]:
        return [c async for c in llm.astream_with_usage(PROMPT)]

    *apieces, alast = asyncio.run(collect())
    assert "".join(c.text for c in apieces) == text
    assert alast.generation_info == last.generation_info


@pytest.mark.slow
def test_closing_a_stream_with_usage_ends_its_lease(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=64, timeout=30, max_retries=0)
    stream = llm.stream_with_usage(PROMPT)
    assert next(stream).text
    stream.close()

    async def first_then_close() -> str:
        agen = llm.astream_with_usage(PROMPT)
        chunk = await agen.__anext__()
        await agen.aclose()
        return chunk.text

    assert asyncio.run(first_then_close())
    # the model is free: a call with no retries and a lock gets it at once
    assert llm.invoke(PROMPT, max_tokens=2)


@pytest.mark.slow
def test_prompt_token_ids_of_a_chat_prompt_never_load(cache: ModelCache) -> None:
    chat = ChatGGUF(temperature=0, max_tokens=4)
    ids = chat.prompt_token_ids(PROMPT)
    assert len(cache) == 0 and cache.total_loads == 0
    assert len(ids) > 5 and all(type(t) is int for t in ids)
    assert ids == GGUFLLM().prompt_token_ids(PROMPT)  # one vocabulary, one tokenisation
    question = [HumanMessage("Name three colours.")]
    counted = chat.get_num_tokens_from_messages(question)  # prompt_token_ids underneath
    assert len(cache) == 0
    msg = chat.invoke(question)
    assert msg.usage_metadata is not None and msg.usage_metadata["input_tokens"] == counted


@pytest.mark.slow
def test_max_new_tokens_per_call_still_limits_transformers(
    cache: ModelCache, hf_checkpoint: Path
) -> None:
    llm = TransformersLLM(model=str(hf_checkpoint), quantization="bf16", temperature=0)
    with pytest.warns(DeprecationWarning, match="max_new_tokens is deprecated"):
        result = llm.generate(["The capital of France is"], max_new_tokens=2)
    assert (result.generations[0][0].generation_info or {})["completion_tokens"] <= 2
    result = llm.generate(["The capital of France is"], max_tokens=3)
    assert 0 < (result.generations[0][0].generation_info or {})["completion_tokens"] <= 3


@pytest.mark.slow
def test_the_openai_routes_report_usage_and_prompt_tokens(cache: ModelCache) -> None:
    pytest.importorskip("fastapi", reason="the HTTP routes need the 'ray' extra")
    from fastapi.testclient import TestClient

    from langchain_setraf.serve.openai_routes import ModelService, ReplicaInfo, standalone_app

    llm = GGUFLLM(temperature=0, max_tokens=4)
    service = ModelService(llm.as_chat_model(), llm, "smollm2", ReplicaInfo("surface-test"))
    with TestClient(standalone_app(service)) as client:
        body = client.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 3}).json()
        usage = body["usage"]
        assert usage["prompt_tokens"] == len(llm.prompt_token_ids(PROMPT))
        assert 0 < usage["completion_tokens"] <= 3
        assert body["choices"][0]["finish_reason"] in {"stop", "length"}
        with_bos = client.post("/tokenize", json={"content": PROMPT, "add_special": True})
        assert with_bos.json()["tokens"] == service.chat.prompt_token_ids(PROMPT)
    assert cache.total_loads == 1
