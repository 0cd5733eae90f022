"""One GGUF for chat and embeddings: RSS of one model with two contexts against the peers'
two loads, one run (#25).

The model is the package's SmolLM2-135M-Instruct GGUF (``default_gguf_path()``); each
configuration runs in its own child process, which imports its engine, takes the RSS
baseline, generates 8 tokens (chat) and embeds the texts (mean pooling: a generation model
declares none):

- ``setraf-chat``: :class:`~langchain_setraf.GGUFLLM` alone (``n_ctx`` 2048);
- ``setraf-chat+embeddings/N``: ``GGUFLLM`` and :class:`~langchain_setraf.GGUFEmbeddings`
  (``n_batch`` N, ``truncate=True`` as llama-cpp-python's ``embed``) on the same file
  through the cache: one ``llama_model``, two contexts;
- ``setraf-two-loads/N``: ``GGUFLLM`` and the same embeddings context loaded on its own
  (``GGUFEmbeddingBackend.load``, outside the cache): two loads, what this package did
  before; the difference from the row above is what sharing saves;
- ``community-chat``: langchain-community's ``LlamaCpp`` alone (``n_ctx`` 2048);
- ``community-chat+embeddings``: ``LlamaCpp`` and ``LlamaCppEmbeddings`` (``n_ctx`` and
  ``n_batch`` 512, its documented use) on the same file: two loads.

Per run: RSS (``VmRSS``), ``RssFile`` (the mapped weights) and ``RssAnon`` at the baseline,
after the chat, and after the embeddings; the mappings of the model file; the ratio of the
RSS with embeddings to the RSS of the chat alone (the issue's target: at most 1.1 for
ours). The peers run with llama.cpp's defaults (repack on, where this CPU allows it: a
crash is recorded as the run's outcome, see benchmarks/crash.py).

Run: ``python -m benchmarks.shared_weights_bench`` (about a minute on 2 cores).
Writes ``benchmarks/results/shared_weights.json`` with the CPU. The 7B shape SETRAF runs:
``python -m benchmarks.synthetic_gguf build 7b DIR Q4_K_M``, then
``python -m benchmarks.shared_weights_bench --model DIR/synthetic-7b-Q4_K_M.gguf
--n-batch 128 512 --no-peers --out benchmarks/results/shared_weights_7b.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from benchmarks.crash import run_json_child

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PROMPT = "The apparent resistivity of wet clay is"

CHILD = r"""
import json, os, sys
impl, model, threads, n_batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
texts = json.loads(sys.stdin.read())
real = os.path.realpath(model)

def point():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssFile", "RssAnon"):
            fields[key] = int(value.split()[0]) * 1024
    maps = sum(1 for line in open("/proc/self/maps") if line.rstrip().endswith(real))
    return {"rss": fields["VmRSS"], "file": fields["RssFile"], "anon": fields["RssAnon"],
            "maps": maps}

# the engines are imported before the baseline, so that the differences are the model's
import llama_cpp
if impl.startswith("setraf"):
    from langchain_setraf import GGUFLLM, GGUFEmbeddings, get_model_cache
    from langchain_setraf.memory import give_back_memory
    give_back_memory()
else:
    from langchain_community.embeddings import LlamaCppEmbeddings
    from langchain_community.llms import LlamaCpp
out = {"baseline": point()}
if impl.startswith("setraf"):
    chat = GGUFLLM(model_path=model, n_ctx=2048, n_threads=threads, max_tokens=8,
                   temperature=0, seed=1)
else:
    chat = LlamaCpp(model_path=model, n_ctx=2048, n_threads=threads, max_tokens=8,
                    temperature=0, seed=1, verbose=False)
text = chat.invoke(sys.argv[5])
out["chat"] = point()
out["generated"] = text
if "+embeddings" in impl or "two-loads" in impl:
    if impl == "setraf-two-loads":  # what this package did before #25: a load per use
        from langchain_setraf.backends.gguf.embedding import GGUFEmbeddingBackend
        backend = GGUFEmbeddingBackend()
        handle = backend.load(backend.spec_for(model, pooling="mean", n_batch=n_batch,
                                               n_threads=threads))
        vectors = handle.embed(texts, truncate=True)
    elif impl.startswith("setraf"):
        emb = GGUFEmbeddings(model_path=model, pooling="mean", n_batch=n_batch,
                             n_threads=threads, truncate=True)
        vectors = emb.embed_documents(texts)
    else:
        emb = LlamaCppEmbeddings(model_path=model, n_ctx=n_batch, n_batch=n_batch,
                                 n_threads=threads, verbose=False)
        vectors = emb.embed_documents(texts)
    out["both"] = point()
    out["dimensions"] = len(vectors[0])
if impl.startswith("setraf"):
    cache = get_model_cache()
    out["weight_loads"] = sum(cache.weight_loads.values())
    out["loaded"] = [
        {"model": m.key.describe(), "estimated_bytes": m.estimated_bytes,
         "weights": m.memory.weights if m.memory else None,
         "shared_with": [s.describe() for s in m.weights_shared_with]}
        for m in cache.loaded()
    ]
print(json.dumps(out))
"""


def texts(count: int) -> list[str]:
    """``count`` sentences of site notes, 8 to 60 words (the embeddings benchmark's)."""
    from benchmarks.embeddings_bench import sentences

    return sentences(count)


def run_child(impl: str, model: str, threads: int, n_batch: int, docs: list[str]) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return run_json_child(
        CHILD, [impl, model, str(threads), str(n_batch), PROMPT], json.dumps(docs), env
    )


def _ratios(run: dict[str, Any], alone: dict[str, Any]) -> dict[str, float] | None:
    """RSS with embeddings over RSS of the chat alone: the whole process's, and the
    model's part (above the baseline)."""
    if "both" not in run or "chat" not in alone:
        return None
    base = alone["baseline"]["rss"]
    return {
        "process_rss": run["both"]["rss"] / alone["chat"]["rss"],
        "model_rss": (run["both"]["rss"] - run["baseline"]["rss"]) / (alone["chat"]["rss"] - base),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-batch", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--out", type=Path, default=RESULTS / "shared_weights.json")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a GGUF generation model (default: the embedded SmolLM2); e.g. the synthetic 7B "
        "of benchmarks.synthetic_gguf, the size SETRAF runs",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip LlamaCpp/LlamaCppEmbeddings")
    args = parser.parse_args(argv)

    from benchmarks.machine import machine_info
    from langchain_setraf.models import default_gguf_path

    model = str(args.model or default_gguf_path())
    docs = texts(args.texts)
    runs: dict[str, Any] = {}
    plan = [("setraf-chat", 0)]
    plan += [(f"setraf-chat+embeddings/{n}", n) for n in args.n_batch]
    plan += [(f"setraf-two-loads/{n}", n) for n in args.n_batch]
    if not args.no_peers:
        plan += [("community-chat", 0), ("community-chat+embeddings", 512)]
    for key, n_batch in plan:
        impl = key.split("/")[0]
        runs[key] = run_child(impl, model, args.threads, n_batch, docs)
        print(key, json.dumps(runs[key]), flush=True)
    ratios = {
        key: _ratios(run, runs["community-chat" if key.startswith("community") else "setraf-chat"])
        for key, run in runs.items()
        if "+embeddings" in key or "two-loads" in key
    }
    result = {
        "machine": machine_info(),
        "model": Path(model).name,
        "texts": args.texts,
        "mean_words": sum(len(t.split()) for t in docs) / len(docs),
        "threads": args.threads,
        "target": "setraf-chat+embeddings process RSS <= 1.1 x setraf-chat",
        "runs": runs,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(ratios, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
