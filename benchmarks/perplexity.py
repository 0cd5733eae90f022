"""Perplexity of each backend/mode on the same tokens of a fixed text.

Usage: python -m benchmarks.perplexity CHECKPOINT [MODE ...]  (default: all modes)

The tokens come from the GGUF's own tokenizer and are fed unchanged to every model (the
transformers checkpoint was converted from that GGUF, so the vocabulary is the same), so
the figures are directly comparable: SmolLM2 GGUF Q4_1 vs transformers fp32 / bf16 / nf4 /
int8. Prints one JSON object.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

TEXT = (Path(__file__).parent / "data" / "ppl_text.txt").read_text(encoding="utf-8").strip()


def _nll(logits_rows: Any, ids: list[int]) -> float:
    """Mean negative log-likelihood of ids[1:] given the logits of the previous position."""
    import numpy as np

    total = 0.0
    for i in range(1, len(ids)):
        row = np.asarray(logits_rows[i - 1], dtype=np.float64)
        m = row.max()
        logz = m + math.log(float(np.exp(row - m).sum()))
        total += logz - row[ids[i]]
    return total / (len(ids) - 1)


def gguf_ppl(ids: list[int]) -> float:
    import llama_cpp

    from langchain_setraf.backends.gguf.backend import model_params
    from langchain_setraf.models import default_gguf_path

    # repack off (GGUFLLM's default; llama.cpp's default crashes on some CPUs): the same
    # weights, so the same perplexity
    with model_params(llama_cpp, use_extra_bufts=False):
        llm = llama_cpp.Llama(
            model_path=str(default_gguf_path()), n_ctx=len(ids) + 16, logits_all=True, verbose=False
        )
    llm.eval(ids)
    nll = _nll(llm.scores[: len(ids)], ids)
    llm.close()
    return math.exp(nll)


def hf_ppl(ckpt: str, mode: str, ids: list[int]) -> float:
    import torch

    from langchain_setraf.backends.transformers.backend import TransformersBackend

    backend = TransformersBackend()
    handle = backend.load(backend.spec_for(ckpt, quantization=mode))
    try:
        with torch.inference_mode():
            logits = handle.model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
        return math.exp(_nll(logits, ids))
    finally:
        handle.close()


def main() -> None:
    import llama_cpp

    from langchain_setraf.models import default_gguf_path

    ckpt = sys.argv[1]
    modes = sys.argv[2:] or ["fp32", "bf16", "nf4", "int8"]
    vocab = llama_cpp.Llama(model_path=str(default_gguf_path()), vocab_only=True, verbose=False)
    ids = vocab.tokenize(TEXT.encode("utf-8"), add_bos=False)
    from benchmarks.machine import machine_info

    out: dict[str, Any] = {
        "tokens": len(ids),
        "perplexity": {},
        "seconds": {},
        "machine": machine_info(),
    }
    t0 = time.perf_counter()
    out["perplexity"]["gguf-q4_1"] = gguf_ppl(ids)
    out["seconds"]["gguf-q4_1"] = time.perf_counter() - t0
    for mode in modes:
        t0 = time.perf_counter()
        out["perplexity"][f"transformers-{mode}"] = hf_ppl(ckpt, mode, ids)
        out["seconds"][f"transformers-{mode}"] = time.perf_counter() - t0
    ref = out["perplexity"].get("transformers-fp32")
    if ref:
        # "quality" as the ratio of perplexities to the fp32 reference (100 % = no loss)
        out["quality_vs_fp32_percent"] = {k: 100 * ref / v for k, v in out["perplexity"].items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
