"""What bitsandbytes' CPU repacking of 4-bit weights costs and brings (nf4, fp4).

On a CPU with AVX512-BF16, ``bitsandbytes.nn.Linear4bit.forward`` converts its weight, the
first time it runs on the CPU in eval mode, into the interleaved layout of its fused bf16
kernel, and expands the double-quantised statistics to bf16 (``quant_state.nested`` goes
from True to False). ``TransformersLLM(cpu_repack=...)`` chooses; this script measures both
layouts on the SmolLM2-135M checkpoint built from the shipped GGUF, each in a fresh process:

* RSS / anonymous after load with the quantisation layout (double quant, ``nested``),
* for the repacked variant, RSS after the repacking (what bitsandbytes does lazily on the
  first forward pass, done here as ``load(cpu_repack=True)`` does it),
* RSS after the first generation, the bytes of weights + statistics of the 4-bit layers,
* tokens/s: 16 greedy tokens after a 6-token prompt, median of 3,
* and, where the CPU can repack, the speed ratio measured in one process with both layouts
  loaded, timings alternating (what a busy machine cannot bias): ``speed`` in the JSON.

Usage (writes ``benchmarks/results/bnb_cpu_repack.json``)::

    python -m benchmarks.bnb_cpu_repack [--modes nf4 fp4] [--out PATH]

On a CPU without AVX512-BF16 only the quantisation layout is measured (bitsandbytes
cannot repack there) and the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import cpu_model, machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bnb_cpu_repack.json"
PROMPT = "The capital of France is"
NEW_TOKENS = 16
RUNS = 3
MB = 1024 * 1024


def _layer_bytes(model: Any) -> dict[str, int]:
    """Bytes held by the 4-bit layers: packed weights and quantisation statistics."""
    import bitsandbytes as bnb

    weights = stats = 0
    for m in model.modules():
        if not isinstance(m, bnb.nn.Linear4bit):
            continue
        weights += m.weight.data.numel() * m.weight.data.element_size()
        qs = m.weight.quant_state
        for t in (qs.absmax, getattr(qs, "offset", None)):
            if t is not None and hasattr(t, "numel"):
                stats += t.numel() * t.element_size()
        state2 = getattr(qs, "state2", None)
        if qs.nested and state2 is not None:
            stats += state2.absmax.numel() * state2.absmax.element_size()
    return {"weights": weights, "statistics": stats}


def _layout(model: Any) -> dict[str, Any]:
    import bitsandbytes as bnb

    states = [m.weight.quant_state for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    return {
        "layers": len(states),
        "nested": sorted({bool(s.nested) for s in states}),
        "packing_format_for_cpu": sorted(
            {bool(getattr(s, "packing_format_for_cpu", False)) for s in states}
        ),
        "absmax_dtype": sorted({str(s.absmax.dtype) for s in states}),
    }


def child(ckpt: str, mode: str, repack: bool) -> dict[str, Any]:
    """Measure one layout in this (fresh) process."""
    import torch

    from langchain_setraf import memory_snapshot
    from langchain_setraf.backends.transformers.backend import (
        TransformersBackend,
        _settle_cpu_layout,
    )
    from langchain_setraf.memory import give_back_memory

    backend = TransformersBackend()
    # load with the quantisation layout first; the repacked variant converts it afterwards,
    # as bitsandbytes does on the first forward pass
    spec = backend.spec_for(ckpt, quantization=mode, cpu_repack=False)
    backend.prepare(spec)
    give_back_memory()
    base = memory_snapshot()
    t0 = time.perf_counter()
    handle = backend.load(spec)
    load_s = time.perf_counter() - t0
    give_back_memory()
    loaded = memory_snapshot()
    model, tok = handle.model, handle.tokenizer
    row: dict[str, Any] = {
        "mode": mode,
        "cpu_repack": repack,
        "baseline_rss": base.rss,
        "load_s": load_s,
        "loaded_rss": loaded.rss,
        "loaded_anon": loaded.anon,
        "loaded_layout": _layout(model),
        "loaded_layer_bytes": _layer_bytes(model),
        "footprint": handle.info.footprint_bytes,
    }
    if repack:
        for m in model.modules():
            if hasattr(m, "support_avx512bf16_for_cpu"):
                m.support_avx512bf16_for_cpu = True
        t0 = time.perf_counter()
        _settle_cpu_layout(model, torch, True)
        row["repack_s"] = time.perf_counter() - t0
        give_back_memory()
        snap = memory_snapshot()
        row["repacked_rss"] = snap.rss
        row["repacked_anon"] = snap.anon
        row["repacked_layout"] = _layout(model)
        row["repacked_layer_bytes"] = _layer_bytes(model)
    ids = tok(PROMPT, return_tensors="pt")
    kwargs = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False}
    with torch.no_grad():
        first = model.generate(**ids, **kwargs)
    give_back_memory()
    snap = memory_snapshot()
    row["first_generation_rss"] = snap.rss
    row["first_generation_anon"] = snap.anon
    row["first_generation_layout"] = _layout(model)
    row["text"] = tok.decode(first[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    speeds = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**ids, **kwargs)
        speeds.append((out.shape[1] - ids["input_ids"].shape[1]) / (time.perf_counter() - t0))
    row["tokens_per_s"] = statistics.median(speeds)
    row["tokens_per_s_runs"] = speeds
    handle.close()
    return row


def speed(ckpt: str, mode: str) -> dict[str, Any]:
    """Both layouts loaded in this process, generations timed alternately."""
    import torch

    from langchain_setraf.backends.transformers.backend import TransformersBackend

    backend = TransformersBackend()
    handles = {
        repack: backend.load(backend.spec_for(ckpt, quantization=mode, cpu_repack=repack))
        for repack in (False, True)
    }
    kwargs = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False}
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(RUNS + 1):
        for repack, handle in handles.items():
            ids = handle.tokenizer(PROMPT, return_tensors="pt")
            t0 = time.perf_counter()
            with torch.no_grad():
                handle.model.generate(**ids, **kwargs)
            if i:  # the first round warms both
                times[repack].append(NEW_TOKENS / (time.perf_counter() - t0))
    for handle in handles.values():
        handle.close()
    off, on = statistics.median(times[False]), statistics.median(times[True])
    return {
        "mode": mode,
        "tokens_per_s_quantisation_layout": off,
        "tokens_per_s_repacked": on,
        "speedup": on / off,
        "runs": {"off": times[False], "on": times[True]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", default=["nf4", "fp4"], choices=["nf4", "fp4"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--speed-only", action="store_true", help="keep the memory rows of --out, rerun speed"
    )
    parser.add_argument("--child", nargs=3, metavar=("CKPT", "MODE", "REPACK"), help="internal")
    parser.add_argument("--speed", nargs=2, metavar=("CKPT", "MODE"), help="internal")
    args = parser.parse_args()
    if args.child:
        ckpt, mode, repack = args.child
        print(json.dumps(child(ckpt, mode, repack == "1")))
        return
    if args.speed:
        print(json.dumps(speed(*args.speed)))
        return

    sys.path.insert(0, str(ROOT / "tests"))
    import bitsandbytes as bnb
    import torch
    import transformers

    from helpers.checkpoint import build_checkpoint
    from langchain_setraf.backends.transformers.backend import cpu_repack_supported
    from langchain_setraf.models import default_gguf_path

    ckpt = str(build_checkpoint(default_gguf_path()))
    supported = cpu_repack_supported()
    old_rows = json.loads(args.out.read_text())["rows"] if args.speed_only else None
    rows = []
    speeds = []
    for mode in args.modes:
        for repack in () if old_rows else (False, True) if supported else (False,):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.bnb_cpu_repack", "--child", ckpt, mode,
                 "1" if repack else "0"],
                capture_output=True, text=True, timeout=900, cwd=ROOT,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"{mode} cpu_repack={repack} failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{mode} cpu_repack={repack}: loaded {row['loaded_rss'] / MB:.0f} MB, "
                + (f"repacked {row['repacked_rss'] / MB:.0f} MB, " if repack else "")
                + f"after 1st generation {row['first_generation_rss'] / MB:.0f} MB, "
                f"{row['tokens_per_s']:.2f} tok/s",
                file=sys.stderr,
            )
        if supported:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.bnb_cpu_repack", "--speed", ckpt, mode],
                capture_output=True, text=True, timeout=1800, cwd=ROOT,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"{mode} speed run failed:\n{proc.stderr[-3000:]}")
            speeds.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{mode}: repacked {speeds[-1]['speedup']:.2f}x faster", file=sys.stderr)
    result = {
        "cpu": cpu_model(),
        "cpu_flags": machine_info()["isa"],
        "avx512_bf16": supported,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bnb.__version__,
        "python": platform.python_version(),
        "new_tokens": NEW_TOKENS,
        "runs": RUNS,
        "rows": old_rows or rows,
        "speed": speeds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
