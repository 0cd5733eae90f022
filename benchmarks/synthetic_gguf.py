"""Synthetic GGUF models with random weights in real architectures' shapes, and the
memory they take through langchain-setraf (mmap) — the 7B headline at real size.

Usage: python -m benchmarks.synthetic_gguf {7b|1b} OUTDIR [--quant Q4_K_M]

Writes an F16 GGUF (llama/Mistral-7B shape: 32 layers, d=4096, FFN 14336, 32 heads, 8 KV
heads; the tokenizer is SmolLM2's, so the vocabulary is 49,152 instead of Mistral's
32,000), quantises it with llama.cpp's own quantiser through llama-cpp-python, loads it
with GGUFLLM and prints RSS / anonymous / load time as JSON. Costs for 7B: ~15 GB of disk
for the F16 file (deleted afterwards), ~4.5 GB for Q4_K_M. Not run in CI.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

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


def measure(model: Path) -> dict[str, Any]:
    from langchain_setraf import GGUFLLM, memory_snapshot

    base = memory_snapshot()
    llm = GGUFLLM(model_path=str(model), n_ctx=2048, max_tokens=4, temperature=0)
    backend, spec = llm._backend_and_spec()
    estimate = backend.estimate_bytes(spec)
    t0 = time.perf_counter()
    llm.invoke("Hello")
    load = time.perf_counter() - t0
    snap = memory_snapshot()
    llm.release()
    return {
        "file_bytes": model.stat().st_size,
        "estimate": estimate,
        "load_plus_4_tokens_s": load,
        "rss": snap.rss - base.rss,
        "anon": (snap.anon or 0) - (base.anon or 0),
        "file": (snap.file or 0) - (base.file or 0),
        "after_release_rss": memory_snapshot().rss - base.rss,
    }


def main() -> None:
    size, outdir = sys.argv[1], Path(sys.argv[2])
    quant = sys.argv[sys.argv.index("--quant") + 1] if "--quant" in sys.argv else "Q4_K_M"
    outdir.mkdir(parents=True, exist_ok=True)
    f16 = outdir / f"synthetic-{size}-f16.gguf"
    q = outdir / f"synthetic-{size}-{quant}.gguf"
    t0 = time.perf_counter()
    f16_bytes = write_f16(f16, size)
    write_s = time.perf_counter() - t0
    quant_s = quantize(f16, q, quant)
    f16.unlink()
    n_params = sum(int(np.prod(d)) for _, d, _ in tensors(SHAPES[size], 49152))
    result = {
        "size": size,
        "quant": quant,
        "params": n_params,
        "f16_bytes": f16_bytes,
        "write_f16_s": write_s,
        "quantize_s": quant_s,
        "mmap": measure(q),
        "transformers_bf16_bytes_estimate": n_params * 2,
        "transformers_fp32_bytes_estimate": n_params * 4,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
