"""Run in a child process: one GGUF for chat and embeddings, then both released; print RSS
figures and the model file's mappings as JSON.

Usage: python shared_weights_probe.py {chat-first|embeddings-first}

``GGUFLLM`` (default model, ``n_ctx`` 2048) generates, then ``GGUFEmbeddings`` on the same
file (``pooling="mean"``, ``n_batch`` 256) embeds; both through the process-wide cache.
Released in the order named (``chat-first``: the LLM, then the embeddings); between the two
releases the model still loaded answers again. The pre-load level is taken after the
imports (llama_cpp's included, as tests/helpers/memory_probe.py does) and
``give_back_memory()``.

Printed: ``baseline``, ``chat`` (RSS after the generation), ``both`` (after the
embeddings too), ``first_released``, ``both_released`` (RSS in bytes), the ``file``
(RssFile) figures at the same points, ``maps`` (how many mappings of the model file the
process has at each point) and the cache's ``weight_loads``.
"""

from __future__ import annotations

import json
import sys

import llama_cpp  # noqa: F401 - import cost measured before the baseline

from langchain_setraf import GGUFLLM, GGUFEmbeddings, get_model_cache
from langchain_setraf.memory import give_back_memory, memory_snapshot
from langchain_setraf.models import default_gguf_path


def _maps(path: str) -> int:
    """Mappings of ``path`` in this process (one per mmapped load of the file)."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if line.rstrip().endswith(path))


def main() -> None:
    order = sys.argv[1]
    if order not in ("chat-first", "embeddings-first"):
        raise SystemExit(
            f"usage: shared_weights_probe.py {{chat-first|embeddings-first}} ({order!r})"
        )
    path = str(default_gguf_path().resolve())
    llm = GGUFLLM(temperature=0, max_tokens=8, seed=1)
    emb = GGUFEmbeddings(model_path=path, pooling="mean", n_batch=256)
    give_back_memory()
    points: dict[str, dict[str, int]] = {}

    def mark(name: str) -> None:
        snap = memory_snapshot()
        points[name] = {"rss": snap.rss, "file": snap.file or 0, "maps": _maps(path)}

    mark("baseline")
    if not llm.invoke("The capital of France is").strip():
        raise RuntimeError("GGUFLLM generated nothing")
    mark("chat")
    vector = emb.embed_query("apparent resistivity of clay")
    mark("both")
    first, second = (llm, emb) if order == "chat-first" else (emb, llm)
    if not first.release():
        raise RuntimeError(f"{type(first).__name__}.release() released nothing")
    again = (
        emb.embed_query("apparent resistivity of clay")
        if order == "chat-first"
        else [float(bool(llm.invoke("The capital of France is").strip()))]
    )
    mark("first_released")
    if not second.release():
        raise RuntimeError(f"{type(second).__name__}.release() released nothing")
    mark("both_released")
    cache = get_model_cache()
    print(
        json.dumps(
            {
                "order": order,
                "points": points,
                "same_vector_after_first_release": again == vector,
                "still_answers": bool(again),
                "weight_loads": sum(cache.weight_loads.values()),
                "weight_releases": sum(cache.weight_releases.values()),
                "loads": cache.total_loads,
            }
        )
    )


if __name__ == "__main__":
    main()
