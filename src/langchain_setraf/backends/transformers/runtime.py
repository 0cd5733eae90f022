"""Importing torch: OpenMP's wait policy first.

torch and llama.cpp are both built with OpenMP, whose wait policy is read once, when its
runtime is loaded: the first of them to load fixes it for the process. The GGUF backend
sets ``OMP_WAIT_POLICY=PASSIVE`` before it imports llama.cpp
(:data:`~langchain_setraf.backends.gguf.runtime.OMP_WAIT_POLICY`); this module does the
same before torch's first import by the transformers backend, so that a process that used
a transformers model first does not leave OpenMP spinning for a GGUF model after it (the
notes' retrieval then SmolLM2's decoding: 30 times slower on a shared 2-core machine,
docs/interpretation.md). It costs torch nothing measurable
(``benchmarks/results/omp_wait_policy.json``). A user's own ``OMP_WAIT_POLICY`` is never
overridden.
"""

from __future__ import annotations

import os

from langchain_setraf.backends.gguf.runtime import OMP_WAIT_POLICY

__all__ = ["prepare_openmp"]


def prepare_openmp() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment chose a policy (call before
    torch's first import; once OpenMP is loaded, a change has no effect)."""
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
