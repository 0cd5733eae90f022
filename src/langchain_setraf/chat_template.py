"""Deprecated alias of :mod:`langchain_setraf.backends.chat_template`.

Removed in 0.5.0.
"""

from __future__ import annotations

import warnings

from langchain_setraf.backends.chat_template import (
    MAX_TEMPLATE_INT_BITS,
    MAX_TEMPLATE_ITERATIONS,
    MAX_TEMPLATE_OUTPUT_CHARS,
    MAX_TEMPLATE_RANGE,
    MAX_TEMPLATE_STEPS,
    OUTPUT_PER_INPUT_CHAR,
    TEMPLATE_DEADLINE_S,
    ChatTemplateError,
    guarded_iter,
    messages_to_dicts,
    render_chat_template,
    render_prompt,
)
from langchain_setraf.backends.gguf.vocabulary import (
    render_gguf_prompt,
)

__all__ = [
    "MAX_TEMPLATE_INT_BITS",
    "MAX_TEMPLATE_ITERATIONS",
    "MAX_TEMPLATE_OUTPUT_CHARS",
    "MAX_TEMPLATE_RANGE",
    "MAX_TEMPLATE_STEPS",
    "OUTPUT_PER_INPUT_CHAR",
    "TEMPLATE_DEADLINE_S",
    "ChatTemplateError",
    "guarded_iter",
    "messages_to_dicts",
    "render_chat_template",
    "render_gguf_prompt",
    "render_prompt",
]

warnings.warn(
    "langchain_setraf.chat_template is deprecated (removed in 0.5.0): "
    "import from langchain_setraf.backends.chat_template",
    DeprecationWarning,
    stacklevel=2,
)
