"""OpenMP's wait policy and torch: what ``OMP_WAIT_POLICY=PASSIVE`` costs torch, and what it
saves llama.cpp when torch came first in the process (#25).

torch and llama.cpp are both built with OpenMP (GNU libgomp), whose wait policy is read
once, when the runtime is loaded: whoever loads first fixes it for the process. The GGUF
backend sets ``PASSIVE`` before it imports llama.cpp (``backends/gguf/runtime.py``), but a
process that used the transformers backend first had loaded torch, and its runtime, with
OpenMP's default (spin before sleeping). Each scenario runs in its own child process, one
run, on ``--threads`` threads, in three modes:

- ``openmp-default``: ``OMP_WAIT_POLICY`` unset and ``torch`` imported before the package
  (nothing of the package can choose): OpenMP's default, what a process got before;
- ``package``: ``OMP_WAIT_POLICY`` unset, torch imported by the package (the transformers
  backend sets ``PASSIVE`` before torch's first import unless the user chose);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` in the environment.

Scenarios:

- ``hf-embeddings``: :class:`~langchain_setraf.TransformersEmbeddings` (all-MiniLM-L6-v2),
  texts/s of ``embed_documents`` after one warm-up call;
- ``hf-llm``: :class:`~langchain_setraf.TransformersLLM` (SmolLM2-135M as bf16
  safetensors, the tests' checkpoint), greedy tokens/s after one warm-up call;
- ``gguf-after-hf``: TransformersEmbeddings embeds the texts, then
  :class:`~langchain_setraf.GGUFLLM` (the embedded SmolLM2 Q4_1) generates: its tokens/s.

Each run also records torch's threads and ``omp_wait_policy``, the environment's value at
the end of the child (in ``openmp-default`` the package sets ``PASSIVE`` after torch has
loaded OpenMP: too late to change its policy).

Run: ``python -m benchmarks.omp_wait_policy_bench`` (a few minutes on 2 cores). Writes
``benchmarks/results/omp_wait_policy.json`` with the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.crash import run_json_child

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODES = ("openmp-default", "package", "passive")
SCENARIOS = ("hf-embeddings", "hf-llm", "gguf-after-hf")

CHILD = r"""
import json, os, sys, time
scenario, mode, minilm, checkpoint = sys.argv[1:5]
threads, tokens = int(sys.argv[5]), int(sys.argv[6])
texts = json.loads(sys.stdin.read())
if mode == "openmp-default":
    import torch  # before the package: OpenMP's own default policy
from langchain_setraf import GGUFLLM, TransformersEmbeddings, TransformersLLM

def embed():
    emb = TransformersEmbeddings(model=minilm)
    emb.embed_documents(texts[:4])  # warm-up and load
    t0 = time.perf_counter()
    emb.embed_documents(texts)
    return len(texts) / (time.perf_counter() - t0)

def generate(llm):
    llm.invoke("Resistivity of clay is")  # warm-up and load
    t0 = time.perf_counter()
    out = llm.generate(["The apparent resistivity of a dry sand layer"])
    info = out.generations[0][0].generation_info or {}
    n = int(info.get("completion_tokens") or tokens)
    return n / (time.perf_counter() - t0), n

result = {}
if scenario == "hf-embeddings":
    result["texts_per_s"] = embed()
elif scenario == "hf-llm":
    llm = TransformersLLM(model=checkpoint, quantization="bf16", max_tokens=tokens,
                          temperature=0.0)
    result["tokens_per_s"], result["tokens"] = generate(llm)
else:
    result["texts_per_s"] = embed()
    llm = GGUFLLM(n_threads=threads, max_tokens=tokens, temperature=0.0)
    result["tokens_per_s"], result["tokens"] = generate(llm)
import torch
result["torch_threads"] = torch.get_num_threads()
result["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
print(json.dumps(result))
"""


def run_child(scenario: str, mode: str, minilm: str, checkpoint: str, threads: int,
              tokens: int, texts: list[str]) -> dict[str, Any]:  # fmt: skip
    """One scenario in one mode, in a fresh child process."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    env.pop("OMP_WAIT_POLICY", None)
    if mode == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return run_json_child(
        CHILD, [scenario, mode, minilm, checkpoint, str(threads), str(tokens)],
        json.dumps(texts), env,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "omp_wait_policy.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "tests"))
    from benchmarks.embeddings_bench import sentences
    from benchmarks.machine import machine_info
    from helpers.checkpoint import build_checkpoint
    from helpers.embedding_model import build_minilm_checkpoint
    from langchain_setraf.models import default_gguf_path

    minilm = str(build_minilm_checkpoint())
    checkpoint = str(build_checkpoint(default_gguf_path()))
    texts = sentences(args.texts)
    runs: dict[str, Any] = {}
    for scenario in SCENARIOS:
        for mode in MODES:
            key = f"{scenario}/{mode}"
            runs[key] = run_child(
                scenario, mode, minilm, checkpoint, args.threads, args.tokens, texts
            )
            print(key, json.dumps(runs[key]), flush=True)
    ratios: dict[str, float] = {}
    for scenario, metric in (
        ("hf-embeddings", "texts_per_s"),
        ("hf-llm", "tokens_per_s"),
        ("gguf-after-hf", "tokens_per_s"),
    ):
        base = runs[f"{scenario}/openmp-default"]
        for mode in ("package", "passive"):
            run = runs[f"{scenario}/{mode}"]
            if metric in base and metric in run:  # neither failed nor crashed
                ratios[f"{scenario}/{mode}_vs_openmp-default"] = run[metric] / base[metric]
    result = {
        "machine": machine_info(),
        "threads": args.threads,
        "texts": args.texts,
        "tokens": args.tokens,
        "runs": runs,
        "ratios": ratios,
        "note": "one run each on a shared machine: a ratio within about 0.8-1.25 is noise",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
