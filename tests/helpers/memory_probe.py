"""Run in a child process: load → generate → release cycles, print RSS figures as JSON.

Usage: python memory_probe.py {gguf|raw-llama} CYCLES
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    mode, cycles = sys.argv[1], int(sys.argv[2])
    import llama_cpp  # noqa: F401 - import cost measured before the baseline

    from langchain_setraf import GGUFLLM, memory_snapshot
    from langchain_setraf.memory import give_back_memory

    give_back_memory()
    baseline = memory_snapshot()
    rows = []
    for _ in range(cycles):
        llm = GGUFLLM(temperature=0, max_tokens=8, seed=1)
        llm.invoke("The capital of France is")
        loaded = memory_snapshot()
        assert llm.release()
        released = memory_snapshot()
        rows.append({"loaded": loaded.rss, "loaded_anon": loaded.anon, "released": released.rss})
    print(json.dumps({"mode": mode, "baseline": baseline.rss, "cycles": rows}))


if __name__ == "__main__":
    main()
