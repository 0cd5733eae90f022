"""A third-party backend for tests: a word-bigram model built from a text file.

It is a real backend: ``load`` reads and indexes the corpus, the handle holds the table
and generates deterministic text (the handle owns generation, as every backend's does),
the shared cache loads it once, and its LLM class only maps LangChain onto the handle.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_setraf import CachedLLM
from langchain_setraf.backends import (
    BackendBase,
    GenerationRequest,
    GenerationStats,
    LoadSpec,
    file_identity,
)


class NGramHandle:
    def __init__(self, table: dict[str, Counter[str]], size: int) -> None:
        self.table = table
        self._size = size

    @property
    def estimated_bytes(self) -> int:
        return self._size

    def close(self) -> None:
        self.table = {}

    def generate(
        self, prompt: str, request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        word = prompt.split()[-1] if prompt.split() else ""
        for _ in range(int(request.params.get("max_tokens", 8))):
            nxt = self.table.get(word)
            if not nxt:
                stats.finish_reason = "stop"
                return
            word = sorted(nxt.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            stats.completion_tokens += 1
            yield " " + word
        stats.finish_reason = "length"

    def chat(
        self, messages: list[dict[str, str]], request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        return self.generate(messages[-1]["content"] if messages else "", request, stats)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class NGramBackend(BackendBase):
    """Every optional attribute not set here takes BackendBase's default."""

    name = "ngram"
    llm_class = "setraf_ngram:NGramLLM"
    model_field = "corpus"

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        return str(path).endswith(".txt") and Path(path).is_file()

    def spec_for(self, corpus: str) -> LoadSpec:
        if not Path(corpus).is_file():
            raise FileNotFoundError(f"corpus not found: {corpus}")
        return LoadSpec.create(self.name, file_identity(corpus), {})

    def estimate_bytes(self, spec: LoadSpec) -> int:
        return Path(spec.path).stat().st_size * 20

    def load(self, spec: LoadSpec) -> NGramHandle:
        words = Path(spec.path).read_text(encoding="utf-8").split()
        table: dict[str, Counter[str]] = defaultdict(Counter)
        for a, b in zip(words, words[1:], strict=False):
            table[a][b] += 1
        return NGramHandle(dict(table), self.estimate_bytes(spec))


_BACKEND = NGramBackend()


class NGramLLM(CachedLLM):
    corpus: str
    max_tokens: int = 8

    @property
    def _llm_type(self) -> str:
        return "ngram"

    def _backend_and_spec(self) -> tuple[NGramBackend, LoadSpec]:
        return _BACKEND, _BACKEND.spec_for(self.corpus)

    def _generation_request(
        self, stop: list[str] | None, overrides: dict[str, Any]
    ) -> GenerationRequest:
        return GenerationRequest(params={"max_tokens": self.max_tokens}, stop=stop)

    def _model_name(self) -> str:
        return Path(self.corpus).name
