"""A third-party embedding backend for tests: bag-of-words vectors over a vocabulary file.

It is a real backend: the model is a ``.vocab`` file (one word per line); ``load`` reads
it and the handle counts each text's words over it (one dimension per word, words outside
the vocabulary ignored), refusing a text longer than ``max_tokens`` words as the built-in
handles do. Its embeddings class subclasses the package's public ``CachedEmbeddings``, so
it gets the prefixes, the normalisation, the call limits and the shared cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from langchain_setraf import CachedEmbeddings
from langchain_setraf.backends import BackendBase, LoadSpec, file_identity
from langchain_setraf.backends.base import TextTooLongError

#: The longest text in words.
MAX_WORDS = 64


class BagOfWordsHandle:
    def __init__(self, path: str, words: list[str]) -> None:
        self.path = path
        self.index = {word: i for i, word in enumerate(words)}
        self._size = 64 * len(words)

    @property
    def estimated_bytes(self) -> int:
        return self._size

    @property
    def dimensions(self) -> int:
        return len(self.index)

    @property
    def max_tokens(self) -> int:
        return MAX_WORDS

    def count_tokens(self, text: str) -> int:
        return len(text.lower().split())

    def embed(self, texts: list[str], *, truncate: bool) -> list[list[float]]:
        out = []
        for i, text in enumerate(texts):
            words = text.lower().split()
            if len(words) > MAX_WORDS:
                if not truncate:
                    raise TextTooLongError(self.path, i, len(words), MAX_WORDS)
                words = words[:MAX_WORDS]
            vector = [0.0] * len(self.index)
            for word in words:
                if word.strip(".,;:") in self.index:
                    vector[self.index[word.strip(".,;:")]] += 1.0
            out.append(vector)
        return out

    def close(self) -> None:
        self.index = {}


class BagOfWordsBackend(BackendBase):
    """Every optional attribute not set here takes BackendBase's default."""

    name = "bow"
    embeddings_class = "setraf_bow:BagOfWordsEmbeddings"
    model_field = "vocabulary"

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        return str(path).endswith(".vocab") and Path(path).is_file()

    def spec_for(self, vocabulary: str) -> LoadSpec:
        if not Path(vocabulary).is_file():
            raise FileNotFoundError(f"vocabulary not found: {vocabulary}")
        return LoadSpec.create(self.name, file_identity(vocabulary), {})

    def estimate_bytes(self, spec: LoadSpec) -> int:
        return Path(spec.path).stat().st_size * 64

    def load(self, spec: LoadSpec) -> BagOfWordsHandle:
        words = Path(spec.path).read_text(encoding="utf-8").split()
        return BagOfWordsHandle(spec.path, words)

    def prompt_tokens(self, spec: LoadSpec, prompt: str) -> list[int]:
        return list(range(len(prompt.lower().split())))


_BACKEND = BagOfWordsBackend()


class BagOfWordsEmbeddings(CachedEmbeddings):
    vocabulary: str

    def _backend_and_spec(self) -> tuple[BagOfWordsBackend, LoadSpec]:
        return _BACKEND, _BACKEND.spec_for(self.vocabulary)
