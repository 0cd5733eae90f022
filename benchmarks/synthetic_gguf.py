"""Synthetic GGUF models with random weights in real architectures' shapes, and the
memory they take through langchain-setraf — the 7B headline at real size.

The llama/Mistral-7B shape: 32 layers, d=4096, FFN 14336, 32 heads, 8 KV heads; the
tokenizer is SmolLM2's, so the vocabulary is 49,152 instead of Mistral's 32,000 (7.38B
parameters instead of 7.24B). The F16 file is written in Python, then quantised by
llama.cpp's own quantiser through llama-cpp-python. Random weights generate nonsense,
but memory, load time and tokens/s depend on the shapes and types only.

Usage (each measurement runs in its own process)::

    python -m benchmarks.synthetic_gguf run 7b /big/disk/synth   # everything below, ~35 min
    python -m benchmarks.synthetic_gguf build 7b OUTDIR Q4_K_M,Q2_K
    python -m benchmarks.synthetic_gguf measure MODEL.gguf [--repack] [--peer]
    python -m benchmarks.synthetic_gguf hf-build 7b CKPT_DIR
    python -m benchmarks.synthetic_gguf hf-measure CKPT_DIR
    python -m benchmarks.report

``run`` writes ``benchmarks/results/scale_<size>.json``. Costs for 7B on 2 cores: ~15 GB
of disk for the F16 file (deleted after quantising), 4.6 GB for Q4_K_M, 2.8 GB for
Q2_K, 15 GB for the bf16 safetensors checkpoint (deleted after measuring); the timings
of each step are recorded in the JSON. Not run in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.crash import child_outcome

SHAPES = {
    "7b": {"n_embd": 4096, "n_layer": 32, "n_ff": 14336, "n_head": 32, "n_head_kv": 8},
    "1b": {"n_embd": 2048, "n_layer": 16, "n_ff": 8192, "n_head": 32, "n_head_kv": 8},
}
F32, F16 = 0, 1
ALIGN = 32


def _s(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def _kv_raw(key: str, vtype: int, payload: bytes) -> bytes:
    return _s(key.encode()) + struct.pack("<I", vtype) + payload


def _tokenizer_kvs() -> list[bytes]:
    """SmolLM2's tokenizer metadata, copied as raw key-value bytes."""
    from gguf import GGUFReader

    from langchain_setraf.models import default_gguf_path

    reader = GGUFReader(str(default_gguf_path()))
    out = []
    for field in reader.fields.values():
        if field.name.startswith("tokenizer."):
            raw = b"".join(bytes(p.tobytes()) for p in field.parts)
            out.append(raw)
    return out


def tensors(shape: dict[str, int], vocab: int) -> list[tuple[str, tuple[int, ...], int]]:
    d, ff, hd = shape["n_embd"], shape["n_ff"], shape["n_embd"] // shape["n_head"]
    kv = hd * shape["n_head_kv"]
    out = [("token_embd.weight", (d, vocab), F16)]
    for i in range(shape["n_layer"]):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (d,), F32),
            (p + "attn_q.weight", (d, d), F16),
            (p + "attn_k.weight", (d, kv), F16),
            (p + "attn_v.weight", (d, kv), F16),
            (p + "attn_output.weight", (d, d), F16),
            (p + "ffn_norm.weight", (d,), F32),
            (p + "ffn_gate.weight", (d, ff), F16),
            (p + "ffn_up.weight", (d, ff), F16),
            (p + "ffn_down.weight", (ff, d), F16),
        ]
    out += [("output_norm.weight", (d,), F32), ("output.weight", (d, vocab), F16)]
    return out


def write_f16(path: Path, size: str) -> int:
    shape = SHAPES[size]
    tok = _tokenizer_kvs()
    vocab = 49152
    u32, f32 = 4, 6
    kvs = [
        _kv_raw("general.architecture", 8, _s(b"llama")),
        _kv_raw("general.name", 8, _s(f"synthetic-{size}".encode())),
        _kv_raw("general.alignment", u32, struct.pack("<I", ALIGN)),
        _kv_raw("llama.context_length", u32, struct.pack("<I", 32768)),
        _kv_raw("llama.embedding_length", u32, struct.pack("<I", shape["n_embd"])),
        _kv_raw("llama.block_count", u32, struct.pack("<I", shape["n_layer"])),
        _kv_raw("llama.feed_forward_length", u32, struct.pack("<I", shape["n_ff"])),
        _kv_raw("llama.attention.head_count", u32, struct.pack("<I", shape["n_head"])),
        _kv_raw("llama.attention.head_count_kv", u32, struct.pack("<I", shape["n_head_kv"])),
        _kv_raw(
            "llama.rope.dimension_count", u32, struct.pack("<I", shape["n_embd"] // shape["n_head"])
        ),
        _kv_raw("llama.attention.layer_norm_rms_epsilon", f32, struct.pack("<f", 1e-5)),
        _kv_raw("general.file_type", u32, struct.pack("<I", 1)),
        *tok,
    ]
    specs = tensors(shape, vocab)
    infos = b""
    offset = 0
    sizes = []
    for name, dims, ttype in specs:
        nbytes = int(np.prod(dims)) * (4 if ttype == F32 else 2)
        infos += _s(name.encode()) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", x) for x in dims) + struct.pack("<IQ", ttype, offset)
        sizes.append(nbytes)
        offset += nbytes + (-nbytes) % ALIGN
    head = b"GGUF" + struct.pack("<IQQ", 3, len(specs), len(kvs)) + b"".join(kvs) + infos
    rng = np.random.default_rng(0)
    with path.open("wb") as fh:
        fh.write(head + b"\0" * ((-len(head)) % ALIGN))
        for (_, dims, ttype), nbytes in zip(specs, sizes, strict=True):
            n = int(np.prod(dims))
            if ttype == F32:
                fh.write(np.ones(n, dtype=np.float32).tobytes())
            else:
                for start in range(0, n, 1 << 26):
                    m = min(1 << 26, n - start)
                    fh.write(
                        (rng.standard_normal(m, dtype=np.float32) * 0.02)
                        .astype(np.float16)
                        .tobytes()
                    )
            fh.write(b"\0" * ((-nbytes) % ALIGN))
    return path.stat().st_size


def quantize(src: Path, dst: Path, quant: str) -> float:
    import llama_cpp

    ftype = {
        "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "Q2_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K,
    }[quant]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 0
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise RuntimeError(f"quantize failed: {rc}")
    return time.perf_counter() - t0


VOCAB = 49152
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def n_params(size: str) -> int:
    return sum(int(np.prod(d)) for _, d, _ in tensors(SHAPES[size], VOCAB))


def build(size: str, outdir: Path, quants: list[str]) -> dict[str, Any]:
    """Write the F16 file once, quantise it to each of ``quants``, delete the F16 file."""
    outdir.mkdir(parents=True, exist_ok=True)
    f16 = outdir / f"synthetic-{size}-f16.gguf"
    t0 = time.perf_counter()
    f16_bytes = write_f16(f16, size)
    out: dict[str, Any] = {
        "size": size,
        "params": n_params(size),
        "f16_bytes": f16_bytes,
        "write_f16_s": time.perf_counter() - t0,
        "quantized": {},
    }
    try:
        for quant in quants:
            q = outdir / f"synthetic-{size}-{quant}.gguf"
            secs = quantize(f16, q, quant)
            out["quantized"][quant] = {
                "path": str(q),
                "bytes": q.stat().st_size,
                "quantize_s": secs,
            }
    finally:
        f16.unlink(missing_ok=True)
    return out


def _deltas(base: Any, snap: Any) -> dict[str, Any]:
    """What the model added to the process (``MemorySnapshot``s before load and loaded),
    and what remains once it is released (measured now)."""
    from langchain_setraf import memory_snapshot

    return {
        "rss": snap.rss - base.rss,
        "uss": (snap.uss or 0) - (base.uss or 0),
        "anon": (snap.anon or 0) - (base.anon or 0),
        "file": (snap.file or 0) - (base.file or 0),
        "peak_rss": snap.peak_rss,
        "after_release_rss": memory_snapshot().rss - base.rss,
    }


def measure(model: Path, *, repack: bool = False, peer: bool = False) -> dict[str, Any]:
    """Load ``model`` (GGUFLLM, or LangChain's ``LlamaCpp`` with ``peer``), generate 8
    tokens, report memory deltas over the post-import level, then release."""
    import llama_cpp

    from langchain_setraf import GGUFLLM, memory_snapshot
    from langchain_setraf.memory import give_back_memory

    if peer:
        from langchain_community.llms import LlamaCpp
    give_back_memory()
    base = memory_snapshot()
    estimate = None
    t0 = time.perf_counter()
    if peer:  # LlamaCpp loads in its constructor
        llm: Any = LlamaCpp(model_path=str(model), n_ctx=2048, max_tokens=8, temperature=0)
    else:
        llm = GGUFLLM(model_path=str(model), n_ctx=2048, max_tokens=8, temperature=0, repack=repack)
        backend, spec = llm._backend_and_spec()
        estimate = backend.estimate_bytes(spec)
    llm.invoke("Hello", max_tokens=1)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    llm.invoke("The list of numbers: 1, 2, 3,", max_tokens=8)
    gen = time.perf_counter() - t0
    snap = memory_snapshot()
    if peer:
        llm.client.close()
    else:
        llm.release()
    del llm
    give_back_memory()
    return {
        "impl": "lc-llamacpp" if peer else "setraf-gguf",
        "repack": True if peer else repack,
        "llama_cpp_version": llama_cpp.__version__,
        "file_bytes": model.stat().st_size,
        "estimate": estimate,
        "load_plus_1_token_s": load,
        "tokens_per_s_8": 8 / gen,
        **_deltas(base, snap),
    }


def hf_build(size: str, outdir: Path) -> dict[str, Any]:
    """A bf16 safetensors checkpoint of the same shape (random weights, sharded, written
    tensor by tensor so the generator never holds the model), with SmolLM2's tokenizer."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, LlamaConfig

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.checkpoint import build_checkpoint
    from langchain_setraf.models import default_gguf_path

    shape = SHAPES[size]
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=shape["n_embd"],
        intermediate_size=shape["n_ff"],
        num_hidden_layers=shape["n_layer"],
        num_attention_heads=shape["n_head"],
        num_key_value_heads=shape["n_head_kv"],
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        dtype=torch.bfloat16,
    )
    t0 = time.perf_counter()
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    shapes = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    del meta
    outdir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    shard: dict[str, torch.Tensor] = {}
    shard_bytes, index, n_shard = 0, {}, 0

    def flush() -> None:
        nonlocal shard, shard_bytes, n_shard
        if shard:
            n_shard += 1
            name = f"model-{n_shard:05d}.safetensors"
            save_file(shard, str(outdir / name), metadata={"format": "pt"})
            index.update(dict.fromkeys(shard, name))
            shard, shard_bytes = {}, 0

    for key, dims in shapes.items():
        if key.endswith("norm.weight"):
            t = torch.ones(dims, dtype=torch.bfloat16)
        else:
            t = (torch.randn(dims, generator=gen, dtype=torch.float32) * 0.02).to(torch.bfloat16)
        shard[key] = t
        shard_bytes += t.numel() * 2
        if shard_bytes >= 2 << 30:
            flush()
    flush()
    total = sum(int(np.prod(d)) * 2 for d in shapes.values())
    (outdir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": index}, indent=1)
    )
    config.save_pretrained(outdir)
    tok_src = build_checkpoint(default_gguf_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tok_src / name).is_file():
            shutil.copy(tok_src / name, outdir / name)
    return {"hf_bytes": total, "hf_build_s": time.perf_counter() - t0, "hf_shards": n_shard}


def hf_measure(ckpt: Path) -> dict[str, Any]:
    """Load the checkpoint with TransformersLLM bf16 for real, generate, release."""
    import torch  # noqa: F401  (import cost is not the model's)

    from langchain_setraf import TransformersLLM, memory_snapshot
    from langchain_setraf.memory import give_back_memory

    give_back_memory()
    base = memory_snapshot()
    llm = TransformersLLM(
        model=str(ckpt),
        quantization="bf16",
        temperature=0,
        max_tokens=2,
        repetition_penalty=1.0,
    )
    backend, spec = llm._backend_and_spec()
    estimate = backend.estimate_bytes(spec)
    t0 = time.perf_counter()
    llm.invoke("Hello", max_tokens=1)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    llm.invoke("The list of numbers: 1, 2, 3,", max_tokens=4)
    gen = time.perf_counter() - t0
    snap = memory_snapshot()
    llm.release()
    return {
        "impl": "setraf-hf-bf16",
        "estimate": estimate,
        "load_plus_1_token_s": load,
        "tokens_per_s_4": 4 / gen,
        **_deltas(base, snap),
    }


def _child(*args: str, env: dict[str, str] | None = None, timeout: int = 3600) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.synthetic_gguf", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    outcome = child_outcome(out.returncode, out.stderr)
    if outcome is not None:  # a peer's crash (or our refusal) is the result on this CPU
        return {"outcome": outcome}
    if out.returncode != 0:
        raise RuntimeError(f"{args}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _warm_page_cache(path: str | Path) -> None:
    """Read a file once so every measurement starts from the same (warm) page cache."""
    with open(path, "rb") as fh:
        while fh.read(16 << 20):
            pass


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(size: str, outdir: Path, *, hf: bool = True) -> dict[str, Any]:
    """Build (unless already built), then measure every variant in its own process."""
    from benchmarks.run_scenario import run_workers

    built = outdir / f"build-{size}.json"
    if built.is_file():
        result: dict[str, Any] = json.loads(built.read_text())
    else:
        _log(f"building {size} in {outdir}")
        result = build(size, outdir, ["Q4_K_M", "Q2_K"])
        built.write_text(json.dumps(result, indent=1))
    result["transformers_bf16_bytes_estimate"] = result["params"] * 2
    result["transformers_fp32_bytes_estimate"] = result["params"] * 4
    result["measured"] = []
    for quant, q in result["quantized"].items():
        for args in ([], ["--repack"], ["--peer"]):
            _log(f"measure {quant} {args}")
            _warm_page_cache(q["path"])
            row = _child("measure", q["path"], *args)
            row.setdefault("impl", "lc-llamacpp" if "--peer" in args else "setraf-gguf")
            row.setdefault("repack", bool(args))  # the peer runs with llama.cpp's default
            row["quant"] = quant
            result["measured"].append(row)
    q4 = result["quantized"]["Q4_K_M"]["path"]
    env = {"SETRAF_BENCH_GGUF": q4, "SETRAF_BENCH_TOKENS": "4", "SETRAF_BENCH_QUICK": "1"}
    result["workers"] = {}
    for impl in ("setraf-gguf", "lc-llamacpp"):
        for n in (1, 4):
            if impl == "lc-llamacpp" and n == 4 and size == "7b":
                continue  # 4 anonymous repacked copies of 7B would not fit in 24 GB
            _log(f"workers {impl} x{n}")
            _warm_page_cache(q4)
            w = run_workers(impl, n, env)
            w.pop("reports", None)
            result["workers"][f"{impl}/{n}"] = w
    w1, w4 = result["workers"]["setraf-gguf/1"], result["workers"]["setraf-gguf/4"]
    result["workers4_vs_1_pss"] = w4["pss_total"] / w1["pss_total"]
    if hf:
        ckpt = outdir / f"hf-{size}-bf16"
        _log("hf-build")
        result.update(_child("hf-build", size, str(ckpt)))
        try:
            _log("hf-measure")
            for shard in sorted(ckpt.glob("*.safetensors")):
                _warm_page_cache(shard)
            result["transformers_bf16"] = _child("hf-measure", str(ckpt))
        finally:
            shutil.rmtree(ckpt, ignore_errors=True)
    return result


def main() -> None:
    from benchmarks.machine import machine_info

    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "build" and len(args) >= 2:
        quants = args[2].split(",") if len(args) > 2 else ["Q4_K_M"]
        result = build(args[0], Path(args[1]), quants)
        (Path(args[1]) / f"build-{args[0]}.json").write_text(json.dumps(result, indent=1))
    elif cmd == "measure" and args:
        result = measure(Path(args[0]), repack="--repack" in args, peer="--peer" in args)
    elif cmd == "hf-build" and len(args) == 2:
        result = hf_build(args[0], Path(args[1]))
    elif cmd == "hf-measure" and args:
        result = hf_measure(Path(args[0]))
    elif cmd == "run" and len(args) >= 2:
        result = run(args[0], Path(args[1]), hf="--no-hf" not in args)
        result["machine"] = machine_info()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"scale_{args[0]}.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
        # target (d), 4 workers <= 1.5x one, checked at the headline size: each worker's
        # private memory (KV cache, buffers, runtime: ~160 MB) is fixed, so the ratio falls
        # with model size (135M: 2.7x, 1B: 1.6x, 7B: 1.2x; docs/benchmarks.md)
        if args[0] == "7b" and result["workers4_vs_1_pss"] > 1.5:
            raise SystemExit(
                f"target missed: 4 workers use {result['workers4_vs_1_pss']:.2f}x the PSS "
                "of one (target <= 1.5x)"
            )
        return
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
