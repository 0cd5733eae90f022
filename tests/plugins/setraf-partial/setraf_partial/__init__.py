"""A backend written without BackendBase that defines only part of the Backend protocol
(what a plugin written against an older release looks like): ``name``, ``load``,
``estimate_bytes``, ``llm_class`` and ``accepts``, nothing else."""

from __future__ import annotations

import os
from typing import Any


class PartialBackend:
    name = "partial"
    llm_class = "setraf_partial:Nothing"

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        return str(path).endswith(".txt")

    def estimate_bytes(self, spec: Any) -> int:
        return 0

    def load(self, spec: Any) -> Any:
        raise RuntimeError("never reached: the registry refuses this backend")
