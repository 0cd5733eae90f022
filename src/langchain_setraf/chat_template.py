"""Render a model's own chat template in a sandboxed Jinja environment.

Templates come from model files, which may be hostile: rendering uses Jinja's
``ImmutableSandboxedEnvironment``, so a template cannot reach Python internals, call
unsafe methods or mutate its inputs; any attempt raises :class:`ChatTemplateError`.

Example:
    >>> render_chat_template(
    ...     "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}",
    ...     [{"role": "user", "content": "hi"}],
    ... )
    '<user>hi'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_setraf.gguf_file import read_gguf_header_cached

__all__ = [
    "ChatTemplateError",
    "messages_to_dicts",
    "render_chat_template",
    "render_gguf_prompt",
    "render_prompt",
]


class ChatTemplateError(ValueError):
    """A chat template failed to render (syntax error, sandbox violation, raise_exception)."""


def _raise(message: str) -> None:
    raise ChatTemplateError(f"chat template raised: {message}")


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
    """Render ``template`` with ``messages`` (``[{"role": ..., "content": ...}]``)."""
    from jinja2.exceptions import SecurityError, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(template).render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=extra.pop("bos_token", ""),
            eos_token=extra.pop("eos_token", ""),
            **extra,
        )
    except SecurityError as exc:
        raise ChatTemplateError(f"chat template blocked by the sandbox: {exc}") from None
    except TemplateError as exc:
        raise ChatTemplateError(f"chat template failed: {exc}") from None


def messages_to_dicts(messages: Sequence[Any]) -> list[dict[str, str]]:
    """LangChain messages → ``[{"role", "content"}]`` with the usual role names."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    out = []
    for m in messages:
        role = roles.get(getattr(m, "type", ""), getattr(m, "type", "user"))
        content = m.content if isinstance(m.content, str) else str(m.content)
        out.append({"role": role, "content": content})
    return out


def render_prompt(
    template: str | None, messages: Sequence[Mapping[str, Any]], *, bos: str = "", eos: str = ""
) -> str:
    """The model's own template (sandboxed), or a plain ``role: content`` transcript for
    base models that ship none."""
    if not template:
        body = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        return body + "\nassistant:"
    return render_chat_template(
        template, messages, add_generation_prompt=True, bos_token=bos, eos_token=eos
    )


def render_gguf_prompt(path: str | os.PathLike[str], messages: Sequence[Mapping[str, Any]]) -> str:
    """Render ``messages`` with the chat template of the GGUF file at ``path``.

    ``bos_token`` and ``eos_token`` are the text of the tokens the file's metadata names,
    as llama-cpp-python's own formatter renders them; the BOS a template writes is then
    the prompt's only one (see :func:`~langchain_setraf._vocabulary.prompt_tokens`).
    Reads the header only: no weights are loaded.
    """
    info = read_gguf_header_cached(path)
    tokens = info.special_tokens
    return render_prompt(
        info.chat_template, messages, bos=tokens.get("bos", ""), eos=tokens.get("eos", "")
    )
