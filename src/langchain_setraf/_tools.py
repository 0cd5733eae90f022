"""Tools and structured output for local chat models: prompts, JSON schemas, parsing.

Local models have no native function-calling API, so tool use is done the way llama.cpp's
own server does it for models without a tool template: the tools are described in the
system prompt as JSON schemas, and the answer is *constrained* to the JSON of a call (a
grammar for GGUF, a token filter for transformers) whenever a call is required
(``tool_choice`` ``"any"`` or a tool's name). With ``"auto"`` the model answers freely and
an answer that is exactly a call's JSON becomes ``AIMessage.tool_calls``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.tool import ToolCall

__all__ = [
    "call_schema",
    "close_objects",
    "format_tool_choice",
    "messages_for_template",
    "parse_tool_calls",
    "tools_system_prompt",
]


def format_tool_choice(tool_choice: Any, tools: Sequence[Mapping[str, Any]]) -> str | None:
    """Normalise ``tool_choice`` to ``None`` / ``"auto"`` / ``"none"`` / ``"any"`` / a name."""
    names = [t["function"]["name"] for t in tools]
    if tool_choice is None or tool_choice is False:
        return None
    if tool_choice is True or tool_choice in ("any", "required"):
        return "any"
    if tool_choice in ("auto", "none"):
        return str(tool_choice)
    if isinstance(tool_choice, Mapping):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
        if name:
            tool_choice = name
    if isinstance(tool_choice, str):
        if tool_choice not in names:
            raise ValueError(
                f"tool_choice {tool_choice!r} is not one of the bound tools: {', '.join(names)}"
            )
        return tool_choice
    raise ValueError(f"unsupported tool_choice: {tool_choice!r}")


def _params(tool: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(tool["function"].get("parameters") or {})
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return params


def close_objects(schema: Any) -> Any:
    """Copy of ``schema`` where objects that list ``properties`` allow no others.

    JSON Schema allows extra keys by default; under constrained decoding a small model
    then invents keys. Unless the schema says otherwise, only declared keys are allowed
    (the same with llama.cpp's grammar and with llguidance).
    """
    if isinstance(schema, list):
        return [close_objects(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {k: close_objects(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def call_schema(tools: Sequence[Mapping[str, Any]], choice: str) -> dict[str, Any]:
    """JSON schema of one tool call ``{"name": ..., "arguments": {...}}`` allowed by ``choice``."""
    allowed = [t for t in tools if choice == "any" or t["function"]["name"] == choice]
    variants = []
    defs: dict[str, Any] = {}
    for t in allowed:
        params = _params(t)
        defs.update(params.pop("$defs", {}) or {})
        params.pop("title", None)
        variants.append(
            {
                "type": "object",
                "properties": {"name": {"const": t["function"]["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    schema: dict[str, Any] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    if defs:
        schema = {**schema, "$defs": defs}
    return dict(close_objects(schema))


def tools_system_prompt(tools: Sequence[Mapping[str, Any]], choice: str | None) -> str:
    """The instructions describing the tools, appended to the system message."""
    lines = ["You can call these tools (JSON schemas of their arguments):"]
    for t in tools:
        fn = t["function"]
        lines.append(
            json.dumps(
                {
                    "name": fn["name"],
                    "description": fn.get("description", ""),
                    "parameters": _params(t),
                },
                ensure_ascii=False,
            )
        )
    lines.append(
        'To call a tool, answer with only this JSON: {"name": <tool name>, "arguments": '
        "{<argument>: <value>}}."
    )
    if choice == "any":
        lines.append("You must call one of the tools.")
    elif choice not in (None, "auto", "none"):
        lines.append(f"You must call the tool {choice}.")
    else:
        lines.append("If no tool is needed, answer normally.")
    return "\n".join(lines)


def messages_for_template(
    messages: Sequence[BaseMessage],
    system_extra: str | None = None,
    *,
    last_extra: str | None = None,
) -> list[dict[str, str]]:
    """LangChain messages → template dicts, tool calls and results written as text.

    ``system_extra`` (an instruction that is the same from call to call: the tools) ends
    the system message; ``last_extra`` (one that changes with the call: a JSON schema)
    ends the last message when it is the user's, else the system message. A prompt that
    keeps what changes last shares its start with the previous call's, which llama.cpp
    does not evaluate again (its prefix match, its slot's prompt cache).
    """
    out: list[dict[str, str]] = []
    for m in messages:
        content = m.content if isinstance(m.content, str) else _text_of(m.content)
        if isinstance(m, AIMessage) and m.tool_calls:
            calls = [{"name": c["name"], "arguments": c["args"]} for c in m.tool_calls]
            call_text = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
            content = f"{content}\n{call_text}".strip()
            out.append({"role": "assistant", "content": content})
        elif isinstance(m, ToolMessage):
            status = getattr(m, "status", "success")
            name = m.name or "tool"
            prefix = f"Result of {name}" + (" (error)" if status == "error" else "")
            out.append({"role": "tool", "content": f"{prefix}: {content}"})
        else:
            role = {"human": "user", "ai": "assistant", "system": "system"}.get(m.type, "user")
            if getattr(m, "name", None) and role == "user":
                content = f"{m.name}: {content}"
            out.append({"role": role, "content": content})
    if last_extra and out and out[-1]["role"] == "user":
        out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{last_extra}"}
    elif last_extra:
        system_extra = "\n\n".join(x for x in (system_extra, last_extra) if x)
    if system_extra:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{system_extra}"}
        else:
            out.insert(0, {"role": "system", "content": system_extra})
    return out


_CALL_BLOCKS = ("tool_use", "tool_call", "function_call", "tool_call_chunk")


def _text_of(content: Any) -> str:
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, Mapping) and block.get("type") in _CALL_BLOCKS:
            continue  # the call itself is carried by AIMessage.tool_calls
        elif isinstance(block, Mapping):
            raise ValueError(
                f"content block of type {block.get('type')!r} is not supported by a text-only "
                "local model"
            )
    return "".join(parts)


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_tool_calls(text: str, tool_names: Sequence[str]) -> list[ToolCall]:
    """Tool calls in ``text`` if it is exactly a call's JSON (or a list of them), else ``[]``."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if not body.startswith(("{", "[")):
        return []
    try:
        data = json.loads(body)
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    calls: list[ToolCall] = []
    for item in items:
        if not isinstance(item, Mapping) or item.get("name") not in tool_names:
            return []
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return []
        if not isinstance(args, Mapping):
            return []
        calls.append(
            ToolCall(
                name=str(item["name"]),
                args=dict(args),
                id=f"call_{uuid.uuid4().hex[:24]}",
                type="tool_call",
            )
        )
    return calls
