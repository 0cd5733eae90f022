"""ChatGGUF / ChatTransformers beyond the standard suite: shared loads, sandbox, grammar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field

from langchain_setraf import (
    GGUFLLM,
    ChatGGUF,
    ChatTransformers,
    TransformersLLM,
)
from langchain_setraf._tools import call_schema, close_objects, format_tool_choice, parse_tool_calls
from langchain_setraf.backends.chat_template import ChatTemplateError
from langchain_setraf.cache import ModelCache
from langchain_setraf.chat_models import json_grammar


class Layer(BaseModel):
    """One geological layer."""

    material: str = Field(description="rock or soil name")
    resistivity_ohm_m: float
    saturated: bool


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "multiply",
            "description": "Multiply two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]


# -- unit ---------------------------------------------------------------------------------------
def test_tool_choice_normalisation_and_errors() -> None:
    assert format_tool_choice("required", TOOLS) == "any"
    assert format_tool_choice(True, TOOLS) == "any"
    assert format_tool_choice({"type": "function", "function": {"name": "multiply"}}, TOOLS) == (
        "multiply"
    )
    with pytest.raises(ValueError, match="'divide' is not one of the bound tools: multiply"):
        format_tool_choice("divide", TOOLS)


def test_call_schema_allows_only_declared_keys() -> None:
    schema = call_schema(TOOLS, "multiply")
    assert schema["properties"]["name"] == {"const": "multiply"}
    assert schema["additionalProperties"] is False
    assert schema["properties"]["arguments"]["additionalProperties"] is False
    assert close_objects({"type": "object", "properties": {}, "additionalProperties": True})[
        "additionalProperties"
    ]


def test_parse_tool_calls_accepts_only_exact_calls() -> None:
    (call,) = parse_tool_calls(
        '```json\n{"name": "multiply", "arguments": {"a": 2}}\n```', ["multiply"]
    )
    assert call["args"] == {"a": 2} and call["id"].startswith("call_")
    assert parse_tool_calls('The answer: {"name": "multiply"}', ["multiply"]) == []
    assert parse_tool_calls('{"name": "other", "arguments": {}}', ["multiply"]) == []
    assert parse_tool_calls('{"name": "multiply", "arguments": "{bad"}', ["multiply"]) == []


def test_json_grammar_forbids_raw_control_characters_in_strings() -> None:
    g = json_grammar({"type": "object", "properties": {"s": {"type": "string"}}})
    (char_rule,) = [ln for ln in g.splitlines() if ln.startswith("char ::=")]
    assert r"\x00-\x1F" in char_rule


def test_constructors_do_not_load(cache: ModelCache, hf_checkpoint: Path) -> None:
    ChatGGUF()
    ChatTransformers(model=str(hf_checkpoint))
    assert len(cache) == 0 and cache.total_loads == 0


def test_hostile_chat_template_is_stopped_by_the_sandbox(
    cache: ModelCache, tmp_path: Path, hf_checkpoint: Path
) -> None:
    ckpt = tmp_path / "hostile"
    ckpt.mkdir()
    for f in hf_checkpoint.iterdir():
        if f.name != "chat_template.jinja":
            os.symlink(f, ckpt / f.name)
    marker = tmp_path / "pwned"
    (ckpt / "chat_template.jinja").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}"
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}"
    )
    chat = ChatTransformers(model=str(ckpt), quantization="bf16", max_tokens=2)
    with pytest.raises(ChatTemplateError, match="sandbox"):
        chat.invoke("hi")
    assert not marker.exists()
    chat.release()


# -- real models --------------------------------------------------------------------------------
@pytest.mark.slow
def test_llm_and_chat_share_one_gguf_load(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=4)
    chat = ChatGGUF(temperature=0, max_tokens=4)
    llm.invoke("Hello")
    chat.invoke("Hello")
    assert cache.total_loads == 1
    (entry,) = cache.loaded()
    assert entry.users == 2
    chat.release()
    assert not llm.is_loaded


@pytest.mark.slow
def test_llm_and_chat_share_one_transformers_load(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = TransformersLLM(model=str(hf_checkpoint), quantization="bf16", max_tokens=3)
    chat = ChatTransformers(model=str(hf_checkpoint), quantization="bf16", max_tokens=3)
    llm.invoke("Hello")
    chat.invoke("Hello")
    assert cache.total_loads == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["gguf", "transformers"])
def test_structured_output_is_valid_json_for_the_schema(
    cache: ModelCache, hf_checkpoint: Path, backend: str
) -> None:
    chat = (
        ChatGGUF(temperature=0, max_tokens=80)
        if backend == "gguf"
        else ChatTransformers(
            model=str(hf_checkpoint), quantization="bf16", temperature=0, max_tokens=80
        )
    )
    prompt = "Describe a saturated clay layer with resistivity 15 ohm-m."
    for method in ("json_schema", "function_calling"):
        out = chat.with_structured_output(Layer, method=method, strict=True).invoke(prompt)
        assert isinstance(out, Layer), (method, out)
    raw = chat.with_structured_output(None, method="json_mode", include_raw=True).invoke(
        'Return a JSON object with the key "resistivity" set to 15.', max_tokens=200
    )
    assert raw["raw"].response_metadata["finish_reason"] == "stop", raw["raw"].content
    assert raw["parsing_error"] is None and isinstance(raw["parsed"], dict)
    assert json.loads(raw["raw"].content) == raw["parsed"]


@pytest.mark.slow
def test_forced_tool_call_then_tool_result_history(cache: ModelCache) -> None:
    chat = ChatGGUF(temperature=0, max_tokens=48)
    msg = chat.bind_tools(TOOLS, tool_choice="multiply").invoke("What is 6 times 7?")
    assert isinstance(msg, AIMessage)
    (call,) = msg.tool_calls
    assert call["name"] == "multiply" and set(call["args"]) == {"a", "b"}
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    history = [
        SystemMessage("You are a calculator."),
        HumanMessage("What is 6 times 7?"),
        msg,
        ToolMessage("42", tool_call_id=call["id"], name="multiply"),
    ]
    final = chat.bind_tools(TOOLS, tool_choice="none").invoke(history)
    assert isinstance(final.content, str) and final.content.strip()
    assert not final.tool_calls


@pytest.mark.slow
def test_stream_carries_usage_and_model_name(cache: ModelCache) -> None:
    chat = ChatGGUF(temperature=0, max_tokens=12)
    chunks = list(chat.stream("Say hello."))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert full.usage_metadata is not None
    assert full.usage_metadata["output_tokens"] > 0 and full.usage_metadata["input_tokens"] > 5
    assert full.response_metadata["model_name"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert full.content == chat.invoke("Say hello.").content


def test_chat_import_does_not_pull_torch() -> None:
    code = "import sys; from langchain_setraf import ChatGGUF; ChatGGUF(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_a_required_tool_call_cut_off_is_reported_not_silent() -> None:
    """A forced call decoded under its grammar but cut off at max_tokens is an invalid
    tool call naming the cause, in invoke and in stream (never an empty answer)."""
    from langchain_setraf import ChatGGUF

    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    chat = ChatGGUF(temperature=0, max_tokens=4).bind_tools([multiply], tool_choice="multiply")
    msg = chat.invoke("What is 45 times 67?")
    assert msg.tool_calls == []
    assert len(msg.invalid_tool_calls) == 1
    assert "cut off at max_tokens" in (msg.invalid_tool_calls[0]["error"] or "")
    assert msg.invalid_tool_calls[0]["args"].startswith("{")
    streamed = None
    for chunk in chat.stream("What is 45 times 67?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.tool_calls == []
    assert len(streamed.invalid_tool_calls) == 1
