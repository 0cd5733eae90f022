"""An embedding backend written without BackendBase that defines only part of the Backend
protocol: ``name``, ``load``, ``estimate_bytes`` and ``embeddings_class``, nothing else."""

from __future__ import annotations

from typing import Any


class PartialEmbeddingBackend:
    name = "partial-embed"
    embeddings_class = "setraf_partial_embed:Nothing"

    def estimate_bytes(self, spec: Any) -> int:
        return 0

    def load(self, spec: Any) -> Any:
        raise RuntimeError("never reached: the registry refuses this backend")
