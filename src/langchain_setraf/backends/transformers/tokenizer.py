"""A transformers checkpoint's tokenizer loaded alone (no weights), with the model's options.

Counting tokens and rendering a chat template never load the model. The tokenizer is kept
per checkpoint version in the process-wide
:func:`~langchain_setraf.backends.tokenizer_cache.tokenizer_cache`.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

from langchain_setraf.backends.base import file_identity
from langchain_setraf.backends.tokenizer_cache import tokenizer_cache
from langchain_setraf.backends.transformers.runtime import prepare_openmp

__all__ = ["HFTokenizer", "hf_tokenizer"]


class HFTokenizer:
    """A transformers checkpoint's tokenizer, loaded without the model."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._lock = threading.Lock()  # a fast tokenizer is not safe to share across threads
        self.chat_template: str | None = getattr(tokenizer, "chat_template", None)
        self.bos_token: str = getattr(tokenizer, "bos_token", None) or ""
        self.eos_token: str = getattr(tokenizer, "eos_token", None) or ""
        eos_id = getattr(tokenizer, "eos_token_id", None)
        self.eos_token_id: int | None = None if eos_id is None else int(eos_id)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (a chat-rendered prompt
        carries its own)."""
        with self._lock:
            ids = self._tok(text, add_special_tokens=False)["input_ids"]
        return [int(i) for i in ids]


def hf_tokenizer(
    model: str,
    *,
    trust_remote_code: bool = False,
    local_files_only: bool = True,
    revision: str | None = None,
) -> HFTokenizer:
    """The (cached) tokenizer of a local checkpoint directory or a cached hub id."""
    identity: tuple[Any, ...] = file_identity(model) if Path(model).exists() else (model, revision)
    key = ("hf", identity, trust_remote_code, local_files_only, revision)

    def build() -> HFTokenizer:
        prepare_openmp()  # AutoTokenizer imports torch: OpenMP's policy first
        try:
            transformers = importlib.import_module("transformers")
        except ImportError as exc:
            raise ImportError(
                f"the transformers backend needs transformers: "
                f"pip install 'langchain-setraf[transformers]' ({exc})"
            ) from exc
        try:
            tok = transformers.AutoTokenizer.from_pretrained(
                model,
                trust_remote_code=trust_remote_code,
                local_files_only=local_files_only,
                revision=revision,
            )
        except OSError as exc:
            if Path(model).exists():
                raise
            raise FileNotFoundError(
                f"{model!r} is neither a local checkpoint directory nor a hub id in the "
                "local Hugging Face cache (pass local_files_only=False to allow a download)"
            ) from exc
        return HFTokenizer(tok)

    return tokenizer_cache().hf.get(key, build)
