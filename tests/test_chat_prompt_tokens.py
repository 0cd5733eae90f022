"""The tokens a GGUF chat model really receives: one BOS, and llama-cpp-python's own.

SETRAF's production model is Mistral-7B-Instruct, whose chat template writes
``{{ bos_token }}`` while its tokenizer also adds a BOS. The test model is the embedded
SmolLM2 carrying Mistral-7B-Instruct-v0.2's template and BOS/EOS metadata
(``helpers/mistral_gguf.py``). The reference is llama-cpp-python's ``Jinja2ChatFormatter``
with the file's template and BOS/EOS text, tokenized the way llama-cpp-python's chat
handler does. The tokens compared are the ones llama.cpp evaluated (the context's
``input_ids`` after the call) and the usage LangChain reports; generation is real.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from langchain_setraf import GGUFLLM, ChatGGUF
from langchain_setraf.backends.chat_template import messages_to_dicts
from langchain_setraf.cache import ModelCache

pytestmark = pytest.mark.slow

CONVERSATION: list[BaseMessage] = [
    SystemMessage("Answer in one short sentence."),
    HumanMessage("What does ERT measure?"),
    AIMessage("Electrical resistivity of the ground."),
    HumanMessage("And what does a low value suggest?"),
]
SINGLE: list[BaseMessage] = [HumanMessage("Name one conductive rock.")]


@pytest.fixture(scope="session")
def mistral_gguf(smollm2_path: Path) -> Path:
    from helpers.mistral_gguf import build_mistral_gguf

    return build_mistral_gguf(smollm2_path)


def _reference(llama: Any, messages: list[BaseMessage]) -> list[int]:
    """What llama-cpp-python's own chat formatter sends for ``messages`` (its chat handler:
    the template rendered with the BOS/EOS text, tokenized without adding a BOS)."""
    model = llama._model  # Llama.__init__ reads the BOS/EOS text the same way
    formatter = Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        bos_token=model.token_get_text(llama.token_bos()),
        eos_token=model.token_get_text(llama.token_eos()),
    )
    result = formatter(messages=messages_to_dicts(messages))
    tokens: list[int] = llama.tokenize(
        result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
    )
    return tokens


def _evaluated(model: ChatGGUF | GGUFLLM, n: int) -> tuple[Any, list[int]]:
    """The loaded ``Llama`` and the first ``n`` tokens its context evaluated last."""
    with model._lease(lock=False) as handle:
        llama = handle.llama
        return llama, [int(t) for t in llama.input_ids[:n]]


def _chat_invoke(model: ChatGGUF, messages: list[BaseMessage]) -> int:
    msg = model.invoke(messages)
    assert msg.usage_metadata is not None
    return int(msg.usage_metadata["input_tokens"])


def _chat_stream(model: ChatGGUF, messages: list[BaseMessage]) -> int:
    chunks = list(model.stream(messages))
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert len(usage) == 1
    return int(usage[0]["input_tokens"])


def _llm_invoke(model: GGUFLLM, messages: list[BaseMessage]) -> int:
    result = model.generate([model.format_chat(messages)])
    info = result.generations[0][0].generation_info or {}
    return int(info["prompt_tokens"])


def _llm_stream(model: GGUFLLM, messages: list[BaseMessage]) -> int:
    model = model.model_copy(update={"streaming": True})
    return _llm_invoke(model, messages)


CASES: dict[str, tuple[type[Any], Callable[[Any, list[BaseMessage]], int]]] = {
    "ChatGGUF.invoke": (ChatGGUF, _chat_invoke),
    "ChatGGUF.stream": (ChatGGUF, _chat_stream),
    "GGUFLLM.format_chat+invoke": (GGUFLLM, _llm_invoke),
    "GGUFLLM.format_chat+stream": (GGUFLLM, _llm_stream),
}


@pytest.mark.parametrize("messages", [CONVERSATION, SINGLE], ids=["conversation", "single"])
@pytest.mark.parametrize("case", list(CASES))
def test_mistral_template_sends_one_bos_and_llama_cpp_pythons_tokens(
    cache: ModelCache, mistral_gguf: Path, case: str, messages: list[BaseMessage]
) -> None:
    cls, call = CASES[case]
    model = cls(model_path=str(mistral_gguf), n_ctx=512, temperature=0, max_tokens=1)
    n_prompt = call(model, messages)
    llama, sent = _evaluated(model, n_prompt)
    want = _reference(llama, messages)
    bos = llama.token_bos()
    assert want[0] == bos and want[1] != bos, "the reference itself must start with one BOS"
    assert n_prompt == len(want), f"{case}: {n_prompt} prompt tokens, expected {len(want)}"
    assert sent[:2] != [bos, bos], f"{case}: the prompt started with two BOS tokens"
    assert sent == want, f"{case}: the tokens sent differ from llama-cpp-python's formatter"
    assert cache.total_loads == 1


def test_both_classes_render_the_same_prompt(mistral_gguf: Path) -> None:
    """``format_chat`` renders BOS and EOS text like ``ChatGGUF`` (it rendered neither)."""
    llm = GGUFLLM(model_path=str(mistral_gguf))
    chat = ChatGGUF(model_path=str(mistral_gguf))
    text = llm.format_chat(CONVERSATION)
    assert text == chat._render(messages_to_dicts(CONVERSATION))
    assert text.startswith("<s> [INST] Answer in one short sentence.\n\nWhat does ERT measure?")
    assert "Electrical resistivity of the ground.</s> [INST]" in text


@pytest.mark.parametrize("cls", [ChatGGUF, GGUFLLM])
def test_chatml_model_without_bos_is_unchanged(
    cache: ModelCache, smollm2_path: Path, cls: type[Any]
) -> None:
    """SmolLM2's own ChatML template and ``add_bos_token=false``: the template's first
    ``<|im_start|>`` (SmolLM2's BOS id) opens the prompt and nothing is added before it."""
    model = cls(temperature=0, max_tokens=1, n_ctx=512)
    call = _chat_invoke if cls is ChatGGUF else _llm_invoke
    n_prompt = call(model, CONVERSATION)
    llama, sent = _evaluated(model, n_prompt)
    want = _reference(llama, CONVERSATION)
    assert sent == want
    bos = llama.token_bos()
    assert sent[0] == bos and sent[1] != bos
