"""Run in a child process: load → generate → release cycles, print RSS figures as JSON.

Usage: python memory_probe.py {gguf|raw-llama} CYCLES

``gguf``: ``GGUFLLM`` (default model, ``n_ctx`` 2048) + ``release()``; the pre-load level
is taken after importing llama_cpp and ``GGUFLLM`` and running ``give_back_memory()``.

``raw-llama``: plain llama-cpp-python, what a user without this package does: the same
model and context built with ``llama_cpp.Llama`` directly, one completion, then ``del`` and
``gc.collect()`` (no ``malloc_trim``). The pre-load level is taken after importing llama_cpp
and ``gc.collect()``; langchain is not imported.

Each cycle row: ``loaded`` (RSS after the generation), ``loaded_anon``, ``released`` (RSS
after the release) and ``released_anon``, in bytes; ``baseline`` is the pre-load RSS.
"""

from __future__ import annotations

import gc
import json
import sys
from typing import Any

PROMPT = "The capital of France is"
N_CTX = 2048  # GGUFLLM's default
MAX_TOKENS = 8


def _raw_cycle(path: str) -> tuple[Any, Any]:
    import llama_cpp

    from langchain_setraf.memory import memory_snapshot

    llm = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, seed=1, verbose=False)
    out = llm.create_completion(PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    if not out["choices"][0]["text"].strip():  # type: ignore[index]
        raise RuntimeError("raw llama_cpp.Llama generated nothing")
    loaded = memory_snapshot()
    del llm, out
    gc.collect()
    return loaded, memory_snapshot()


def _gguf_cycle() -> tuple[Any, Any]:
    from langchain_setraf import GGUFLLM
    from langchain_setraf.memory import memory_snapshot

    llm = GGUFLLM(temperature=0, max_tokens=MAX_TOKENS, seed=1)
    llm.invoke(PROMPT)
    loaded = memory_snapshot()
    if not llm.release():
        raise RuntimeError("GGUFLLM.release() released nothing")
    return loaded, memory_snapshot()


def main() -> None:
    mode, cycles = sys.argv[1], int(sys.argv[2])
    if mode not in ("gguf", "raw-llama"):
        raise SystemExit(f"usage: memory_probe.py {{gguf|raw-llama}} CYCLES (got mode {mode!r})")
    import llama_cpp  # noqa: F401 - import cost measured before the baseline

    from langchain_setraf.memory import give_back_memory, memory_snapshot
    from langchain_setraf.models import default_gguf_path

    path = str(default_gguf_path())
    if mode == "raw-llama":
        gc.collect()
    else:
        from langchain_setraf import GGUFLLM  # noqa: F401 - langchain's import cost too

        give_back_memory()
    baseline = memory_snapshot()
    rows = []
    for _ in range(cycles):
        loaded, released = _raw_cycle(path) if mode == "raw-llama" else _gguf_cycle()
        rows.append(
            {
                "loaded": loaded.rss,
                "loaded_anon": loaded.anon,
                "released": released.rss,
                "released_anon": released.anon,
            }
        )
    print(json.dumps({"mode": mode, "model": path, "baseline": baseline.rss, "cycles": rows}))


if __name__ == "__main__":
    main()
