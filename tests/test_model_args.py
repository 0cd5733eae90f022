"""What the classes accept and what reading them costs.

- Unknown constructor arguments are refused, naming the closest valid one.
- Reading metadata (chat template, token counts, memory estimate) never loads or cycles a
  model; ``ChatTransformers(keep_alive=0)`` loads exactly once per call.
- No file handle is left open (no ``ResourceWarning``, during calls or at exit).
- LangChain's cache key covers every sampling option of the chat classes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.globals import set_llm_cache
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_setraf import GGUFLLM, ChatGGUF, ChatTransformers, TransformersLLM, init_llm
from langchain_setraf.cache import ModelCache

MESSAGES: list[BaseMessage] = [
    SystemMessage("Answer briefly."),
    HumanMessage("What does a Wenner array measure?"),
    AIMessage("Apparent resistivity."),
    HumanMessage("At what depth?"),
]

ALL_CLASSES: list[tuple[type[Any], dict[str, Any]]] = [
    (GGUFLLM, {}),
    (ChatGGUF, {}),
    (TransformersLLM, {"model": "/models/checkpoint"}),
    (ChatTransformers, {"model": "/models/checkpoint"}),
]


# -- unknown arguments ------------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "base"), ALL_CLASSES, ids=lambda c: getattr(c, "__name__", ""))
@pytest.mark.parametrize(
    ("typo", "meant"),
    [("temprature", "temperature"), ("top_kk", "top_k"), ("stops", "stop")],
)
def test_a_typo_is_refused_naming_the_field(
    cls: type[Any], base: dict[str, Any], typo: str, meant: str
) -> None:
    with pytest.raises(ValueError, match=rf"unknown argument.*'{typo}' \(did you mean '{meant}'"):
        cls(**base, **{typo: 0.5})


@pytest.mark.parametrize(
    ("cls", "kwargs", "meant"),
    [
        (GGUFLLM, {"n_ctxx": 4096}, "n_ctx"),
        (ChatGGUF, {"n_gpu_layer": 10}, "n_gpu_layers"),
        (TransformersLLM, {"model": "m", "quantisation": "nf4"}, "quantization"),
        (ChatTransformers, {"model": "m", "max_new_tokens": 8}, "max_tokens"),
    ],
)
def test_a_typo_of_a_class_specific_field_is_refused(
    cls: type[Any], kwargs: dict[str, Any], meant: str
) -> None:
    with pytest.raises(ValueError, match=f"did you mean '{meant}'"):
        cls(**kwargs)


def test_an_argument_with_no_close_field_is_refused_and_the_valid_ones_listed() -> None:
    with pytest.raises(
        ValueError, match="'gpu_count' \\(no argument has a similar name\\)"
    ) as info:
        GGUFLLM(gpu_count=1)
    assert "n_ctx" in str(info.value) and "model_kwargs" in str(info.value)


def test_valid_arguments_and_langchain_fields_are_still_accepted(smollm2_path: Path) -> None:
    llm = GGUFLLM(
        n_ctx=1024, temperature=0, tags=["t"], metadata={"k": 1}, callbacks=None, verbose=False
    )
    assert llm.n_ctx == 1024 and llm.tags == ["t"]
    via_factory = init_llm(f"gguf:{smollm2_path}", n_ctx=1024, min_p=0.1)
    assert via_factory.n_ctx == 1024 and via_factory.min_p == 0.1
    with pytest.raises(ValueError, match="did you mean 'n_ctx'"):
        init_llm(f"gguf:{smollm2_path}", n_ctxx=1024)
    assert ChatGGUF(streaming=True).streaming


# -- metadata without loading -----------------------------------------------------------------
def _untouched(cache: ModelCache) -> None:
    assert cache.stats() == {"loads": 0, "releases": 0, "loaded": 0}


@pytest.mark.parametrize("cls", [GGUFLLM, ChatGGUF])
def test_gguf_metadata_never_loads_the_weights(
    cache: ModelCache, smollm2_path: Path, cls: type[Any]
) -> None:
    model = cls(keep_alive=0)
    assert model.get_num_tokens("hello") == 1
    _untouched(cache)
    assert model.get_num_tokens("<|im_start|>") == 1  # a special token of SmolLM2
    assert model.get_token_ids("electrical resistivity")
    _untouched(cache)
    assert model.get_num_tokens_from_messages(MESSAGES) > 10
    _untouched(cache)
    if cls is GGUFLLM:
        assert model.chat_template() and model.format_chat(MESSAGES).startswith("<|im_start|>")
    else:
        assert model._render([{"role": "user", "content": "hi"}]).startswith("<|im_start|>")
    _untouched(cache)
    assert model.estimate_memory() > smollm2_path.stat().st_size // 2
    _untouched(cache)
    assert not model.is_loaded
    if sys.platform.startswith("linux"):  # llama.cpp's vocab-only load maps no weights
        maps = Path("/proc/self/maps").read_text()
        assert str(smollm2_path.resolve()) not in maps


def test_gguf_chat_token_count_is_what_the_model_receives(cache: ModelCache) -> None:
    chat = ChatGGUF(temperature=0, max_tokens=1)
    counted = chat.get_num_tokens_from_messages(MESSAGES)
    _untouched(cache)
    msg = chat.invoke(MESSAGES)
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == counted
    assert cache.total_loads == 1


@pytest.mark.slow
def test_transformers_metadata_never_loads_the_weights(
    cache: ModelCache, hf_checkpoint: Path
) -> None:
    ckpt = str(hf_checkpoint)
    chat = ChatTransformers(model=ckpt, quantization="bf16", keep_alive=0, max_tokens=2)
    llm = TransformersLLM(model=ckpt, quantization="bf16", keep_alive=0, max_tokens=2)
    assert llm.get_num_tokens("hello") == 1
    _untouched(cache)
    assert chat.get_num_tokens("hello") == 1
    counted = chat.get_num_tokens_from_messages(MESSAGES)
    assert chat._render([{"role": "user", "content": "hi"}]).startswith("<|im_start|>")
    _untouched(cache)
    assert chat.estimate_memory() > 0
    _untouched(cache)
    msg = chat.invoke(MESSAGES)
    assert msg.usage_metadata is not None and msg.usage_metadata["input_tokens"] == counted


@pytest.mark.slow
def test_chat_transformers_keep_alive_zero_loads_exactly_once_per_call(
    cache: ModelCache, hf_checkpoint: Path
) -> None:
    chat = ChatTransformers(
        model=str(hf_checkpoint), quantization="bf16", keep_alive=0, max_tokens=2
    )
    for call in (1, 2):
        chat.invoke(MESSAGES)
        assert cache.total_loads == call, f"call {call}: {cache.total_loads} loads in all"
        assert not chat.is_loaded, "keep_alive=0 keeps nothing loaded after the call"


# -- file handles ------------------------------------------------------------------------------
_LEAK_PROBE = """
import gc, json, sys, warnings
warnings.simplefilter("always", ResourceWarning)
from pydantic import BaseModel
from langchain_setraf import GGUFLLM, ChatGGUF

class Layer(BaseModel):
    material: str

llm = GGUFLLM(temperature=0, max_tokens=2)
chat = ChatGGUF(temperature=0, max_tokens=8)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ResourceWarning)
    for _ in range(3):
        llm.invoke("Hi")
        list(llm.stream("Hi"))
        chat.invoke("Hi")
        chat.with_structured_output(Layer).invoke("Clay")
        llm.get_num_tokens("hello")
    llm.release()
    gc.collect()
print(json.dumps([str(w.message) for w in caught if w.category is ResourceWarning]))
"""


@pytest.mark.slow
def test_no_file_handle_is_left_open_during_calls_or_at_exit() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", _LEAK_PROBE],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    during = json.loads(proc.stdout.strip().splitlines()[-1])
    assert during == [], f"handles leaked by calls: {during}"
    at_exit = [ln for ln in proc.stderr.splitlines() if "ResourceWarning" in ln]
    assert at_exit == [], f"handles left open at exit: {at_exit}"


# -- LangChain cache keys ----------------------------------------------------------------------
GGUF_SAMPLING_VARIANTS = [
    {"temperature": 0.9},
    {"top_p": 0.5},
    {"top_k": 5},
    {"min_p": 0.2},
    {"max_tokens": 3},
    {"repeat_penalty": 1.3},
    {"seed": 7},
    {"stop": ["."]},
    {"model_kwargs": {"presence_penalty": 0.5}},
    {"n_ctx": 1024},
]


@pytest.mark.parametrize("change", GGUF_SAMPLING_VARIANTS, ids=lambda c: next(iter(c)))
def test_chat_gguf_cache_key_covers_each_sampling_option(change: dict[str, Any]) -> None:
    base = {"temperature": 0.0, "max_tokens": 8}
    a, b = ChatGGUF(**base), ChatGGUF(**{**base, **change})
    assert a._get_llm_string() != b._get_llm_string()
    assert a._get_llm_string() == ChatGGUF(**base)._get_llm_string()


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.9},
        {"top_p": 0.5},
        {"top_k": 5},
        {"max_tokens": 3},
        {"repetition_penalty": 1.3},
        {"seed": 7},
        {"stop": ["."]},
        {"quantization": "fp32"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_chat_transformers_cache_key_covers_each_sampling_option(change: dict[str, Any]) -> None:
    base = {"model": "/models/checkpoint", "temperature": 0.0, "max_tokens": 8}
    a, b = ChatTransformers(**base), ChatTransformers(**{**base, **change})
    assert a._get_llm_string() != b._get_llm_string()


def test_cache_key_covers_structured_output_format() -> None:
    chat = ChatGGUF(temperature=0)
    schema = {"type": "json_schema", "schema": {"type": "object"}}
    assert chat._get_llm_string() != chat._get_llm_string(response_format=schema)


@pytest.fixture()
def llm_cache() -> Iterator[InMemoryCache]:
    store = InMemoryCache()
    set_llm_cache(store)
    try:
        yield store
    finally:
        set_llm_cache(None)


def test_set_llm_cache_never_returns_another_configurations_answer(
    cache: ModelCache, llm_cache: InMemoryCache
) -> None:
    short = ChatGGUF(temperature=0, max_tokens=2)
    long = ChatGGUF(temperature=0, max_tokens=12)
    warm = ChatGGUF(temperature=0.7, max_tokens=2, seed=3)
    question = "List three rocks that conduct electricity."
    first = short.invoke(question)
    assert len(llm_cache._cache) == 1
    assert short.invoke(question).content == first.content  # a hit for the same configuration
    assert len(llm_cache._cache) == 1
    longer = long.invoke(question)
    warm.invoke(question)
    assert len(llm_cache._cache) == 3, "another configuration was answered from the cache"
    assert longer.usage_metadata is not None and first.usage_metadata is not None
    assert longer.usage_metadata["output_tokens"] > first.usage_metadata["output_tokens"]


@pytest.mark.parametrize(
    ("cls", "base", "change"),
    [
        (GGUFLLM, {}, {"stop": ["."]}),
        (GGUFLLM, {}, {"min_p": 0.2}),
        (TransformersLLM, {"model": "/models/checkpoint"}, {"stop": ["."]}),
        (TransformersLLM, {"model": "/models/checkpoint"}, {"model_kwargs": {"num_beams": 2}}),
    ],
)
def test_llm_cache_key_covers_stop_and_extra_options(
    cls: type[Any], base: dict[str, Any], change: dict[str, Any]
) -> None:
    def llm_string(llm: Any) -> str:  # what BaseLLM.generate keys LangChain's cache on
        return str(
            sorted({**llm._identifying_params, "_type": llm._llm_type, "stop": None}.items())
        )

    assert llm_string(cls(**base)) != llm_string(cls(**base, **change))
