"""Run in a child process: TransformersLLM load → generate → release cycles, as JSON.

Usage: python hf_memory_probe.py CHECKPOINT MODE CYCLES [--raw] [--cpu-repack=on|off]
       [--new-tokens=N]

``--raw`` measures plain transformers (``from_pretrained``, ``del``, ``gc``,
``malloc_trim``) without the package's allocator tuning, for comparison.
``--cpu-repack=on|off`` passes ``cpu_repack=True|False`` (nf4/fp4); without it the default
(``None``: bitsandbytes' choice for this CPU). The output says which layout was used
(``cpu_repacked``). ``--new-tokens`` (default 16) is the greedy generation timed per cycle.
The pre-load level is taken after importing the libraries the mode needs (torch,
transformers, bitsandbytes for 4/8-bit): the model's memory is what comes and goes.
Peak RSS of each load is VmHWM, reset before the load through ``/proc/self/clear_refs``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main() -> None:
    ckpt, mode, cycles = sys.argv[1], sys.argv[2], int(sys.argv[3])
    raw = "--raw" in sys.argv
    flags = [a for a in sys.argv[4:] if a.startswith("--cpu-repack=")]
    cpu_repack = {"on": True, "off": False}[flags[-1].split("=", 1)[1]] if flags else None
    load_opts = {"cpu_repack": cpu_repack} if cpu_repack is not None else {}
    tokens = [int(a.split("=", 1)[1]) for a in sys.argv[4:] if a.startswith("--new-tokens=")]
    new_tokens = tokens[-1] if tokens else 16
    import torch
    import transformers

    if mode in ("nf4", "fp4", "int8"):
        import bitsandbytes  # noqa: F401

    from langchain_setraf import TransformersLLM, memory_snapshot
    from langchain_setraf.memory import give_back_memory

    before = memory_snapshot()

    prompt = "The capital of France is"
    probe_llm = TransformersLLM(model=ckpt, quantization=mode, **load_opts)
    backend, spec = probe_llm._backend_and_spec()
    backend.prepare(spec)  # one-time library imports are not the model's memory
    imported = memory_snapshot()
    give_back_memory()
    baseline = memory_snapshot()
    rows = []
    cpu_repacked = False
    for _ in range(cycles):
        _reset_peak()
        t0 = time.perf_counter()
        if raw:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[mode]
            tok = transformers.AutoTokenizer.from_pretrained(ckpt)
            model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=dtype)
            load_s = time.perf_counter() - t0
            ids = tok(prompt, return_tensors="pt")
            t1 = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
            gen_s = time.perf_counter() - t1
            n_out = int(out.shape[1] - ids["input_ids"].shape[1])
            footprint = int(model.get_memory_footprint())
            loaded = memory_snapshot()
            del model, tok, out, ids
            give_back_memory()
        else:
            llm = TransformersLLM(
                model=ckpt, quantization=mode, temperature=0, max_tokens=1, **load_opts
            )
            llm.invoke(prompt)
            load_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            result = llm.generate([prompt], max_tokens=new_tokens)
            gen_s = time.perf_counter() - t1
            n_out = int(result.generations[0][0].generation_info["completion_tokens"])
            (entry,) = llm._cache().loaded()
            footprint = entry.estimated_bytes
            with llm._lease(lock=False) as handle:
                cpu_repacked = handle.info.cpu_repacked
            loaded = memory_snapshot()
            assert llm.release()
        released = memory_snapshot()
        rows.append(
            {
                "load_s": load_s,
                "tokens_per_s": n_out / gen_s,
                "footprint": footprint,
                "loaded": loaded.rss,
                "loaded_anon": loaded.anon,
                "loaded_file": loaded.file,
                "peak": loaded.peak_rss,
                "released": released.rss,
                "released_anon": released.anon,
            }
        )
    print(
        json.dumps(
            {
                "mode": mode,
                "raw": raw,
                "cpu_repack": cpu_repack,
                "cpu_repacked": cpu_repacked,
                "new_tokens": new_tokens,
                "baseline": baseline.rss,
                "before_prepare": before.rss,
                "imported": imported.rss,
                "cycles": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
