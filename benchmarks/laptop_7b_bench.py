"""What a 7B model takes at long contexts with each KV cache type: the "8 GB laptop"
question of issue 23, measured on the synthetic 7B Q4_K_M (Mistral-7B's shape: 32 layers,
8 KV heads of 128; random weights, so memory and speed are real and answers are not).

Flash attention is on for a quantised V cache (llama.cpp needs it) and, in one row, for
f16 too. Each configuration loads the model with ``GGUFLLM`` in its own child process, answers one
token, and reports: the process's RSS before the load and after the answer (the model's
share is the difference), the package's estimate split (weights / KV cache / other) and
llama.cpp's own buffer sizes (``loaded_memory()``).

Run: ``python -m benchmarks.laptop_7b_bench DIR`` with ``DIR/synthetic-7b-Q4_K_M.gguf``
(``python -m benchmarks.synthetic_gguf build 7b DIR``). Writes
``benchmarks/results/laptop_7b.json`` with the CPU and the load average.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: (n_ctx, KV type); ``+fa``: flash attention on (a quantised V cache turns it on anyway).
CONFIGS = (
    (8192, "f16"),
    (32768, "f16"),
    (32768, "f16+fa"),
    (32768, "q8_0"),
    (32768, "q4_0"),
    (16384, "q8_0"),
)


def child(model: str, n_ctx: int, kv: str) -> dict[str, Any]:
    """One configuration, in this (fresh) process."""
    from langchain_setraf import GGUFLLM, loaded_memory, memory_snapshot
    from langchain_setraf.memory import give_back_memory

    give_back_memory()
    base = memory_snapshot()
    kv_type, _, flash = kv.partition("+")
    llm = GGUFLLM(
        model_path=model,
        n_ctx=n_ctx,
        type_k=kv_type,  # type: ignore[arg-type]
        type_v=kv_type,  # type: ignore[arg-type]
        flash_attn=True if flash == "fa" else "auto",
        max_tokens=1,
        temperature=0,
    )
    llm.invoke("Hello")
    snap = memory_snapshot()
    [memory] = loaded_memory()
    out = {
        "n_ctx": n_ctx,
        "kv": kv,
        "baseline_rss": base.rss,
        "rss": snap.rss,
        "model_rss": snap.rss - base.rss,
        "peak_rss": snap.peak_rss,
        "estimate": memory.estimate.as_dict(),
        "allocated": None if memory.allocated is None else memory.allocated.as_dict(),
    }
    llm.release()
    return out


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        print("RESULT " + json.dumps(child(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
        return 0
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.path[:0] = [str(REPO), str(REPO / "src")]
    from benchmarks.machine import machine_info

    model = Path(sys.argv[1]) / "synthetic-7b-Q4_K_M.gguf"
    if not model.is_file():
        raise SystemExit(f"{model} missing: python -m benchmarks.synthetic_gguf build 7b DIR")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    load_before = os.getloadavg()
    rows = []
    for n_ctx, kv in CONFIGS:
        argv = [sys.executable, "-m", "benchmarks.laptop_7b_bench", "child", str(model)]
        done = subprocess.run(
            [*argv, str(n_ctx), kv],
            capture_output=True,
            text=True,
            timeout=1200,
            env=env,
            cwd=REPO,
            check=False,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"{n_ctx} {kv}: exit {done.returncode}\n{done.stderr[-2000:]}")
        rows.append(json.loads(lines[-1].removeprefix("RESULT ")))
        print(rows[-1], flush=True)
    report = {
        "model": "synthetic 7B Q4_K_M (Mistral-7B shape)",
        "file_bytes": model.stat().st_size,
        "rows": rows,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine_info(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "laptop_7b.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
