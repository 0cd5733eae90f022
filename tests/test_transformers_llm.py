"""TransformersLLM on a real checkpoint (SmolLM2-135M, built from the shipped GGUF)."""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from langchain_setraf import CheckpointError, PickleWeightsRefusedError, TransformersLLM
from langchain_setraf.backends.transformers import backend as hf_backend
from langchain_setraf.backends.transformers.backend import (
    TransformersBackend,
    cpu_repack_supported,
    resolve_cpu_repack,
    resolve_mode,
)
from langchain_setraf.backends.transformers.generate import StopScanner
from langchain_setraf.cache import ModelCache

PROMPT = "The capital of France is"
HELPERS = Path(__file__).parent / "helpers"


def _llm(ckpt: Path, mode: str = "bf16", **kw: object) -> TransformersLLM:
    return TransformersLLM(model=str(ckpt), quantization=mode, temperature=0, **kw)  # type: ignore[arg-type]


# -- unit: no model ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("chunks", "stops", "want"),
    [
        (["Hello wor", "ld. Bye"], ["."], "Hello world"),
        (["a", "b", "<", "/s", ">tail"], ["</s>"], "ab"),
        (["a<", "b"], ["</s>"], "a<b"),  # a held-back prefix that does not complete is emitted
        (["x", "y"], [], "xy"),
        (["Paris\n\nQ", ":"], ["\n\nQ:", "\n"], "Paris"),  # earliest stop wins
    ],
)
def test_stop_scanner_cuts_at_text_level(chunks: list[str], stops: list[str], want: str) -> None:
    sc = StopScanner(stops)
    out = "".join(sc.feed(c) for c in chunks) + sc.flush()
    assert out == want


def test_auto_mode_follows_the_measured_evidence() -> None:
    assert resolve_mode("auto", cuda=False, bnb_available=True) == "bf16"
    assert resolve_mode("auto", cuda=True, bnb_available=True) == "nf4"
    assert resolve_mode("auto", cuda=True, bnb_available=False) == "fp16"
    assert resolve_mode("int8", cuda=False, bnb_available=True) == "int8"
    with pytest.raises(ValueError, match="unknown quantization 'q3'"):
        resolve_mode("q3", cuda=False, bnb_available=True)


@pytest.mark.parametrize("supported", [True, False])
def test_cpu_repack_choice_follows_the_cpu(
    monkeypatch: pytest.MonkeyPatch, supported: bool
) -> None:
    """``None`` does what bitsandbytes does on this CPU; ``True`` where it cannot is an error."""
    monkeypatch.setattr(hf_backend, "cpu_repack_supported", lambda: supported)
    assert resolve_cpu_repack(None, mode="nf4", device="cpu") is supported
    assert resolve_cpu_repack(False, mode="fp4", device="cpu") is False
    if supported:
        assert resolve_cpu_repack(True, mode="nf4", device="cpu") is True
    else:
        with pytest.raises(ValueError, match="needs a CPU with AVX512-BF16"):
            resolve_cpu_repack(True, mode="nf4", device="cpu")
    # only 4-bit weights on the CPU are ever repacked
    assert resolve_cpu_repack(None, mode="nf4", device="cuda") is False
    assert resolve_cpu_repack(None, mode="int8", device="cpu") is False
    with pytest.raises(ValueError, match="applies to nf4/fp4 on the CPU; this load is bf16"):
        resolve_cpu_repack(True, mode="bf16", device="cpu")


def test_cpu_repack_option_is_checked_before_loading(hf_checkpoint: Path) -> None:
    backend = TransformersBackend()
    spec = backend.spec_for(hf_checkpoint, quantization="nf4", cpu_repack=False)
    assert spec.options.cpu_repack is False  # type: ignore[attr-defined]  # in the cache key
    unset = backend.spec_for(hf_checkpoint, quantization="nf4")
    assert unset.options.cpu_repack is None and unset != spec  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"4-bit modes \(nf4, fp4\), not 'int8'"):
        backend.spec_for(hf_checkpoint, quantization="int8", cpu_repack=True)
    with pytest.raises(TypeError, match="cpu_repack must be True, False or None, got 'yes'"):
        backend.spec_for(hf_checkpoint, quantization="nf4", cpu_repack="yes")


def test_constructor_and_spec_do_not_import_torch(hf_checkpoint: Path) -> None:
    code = (
        "import sys; from langchain_setraf import TransformersLLM;"
        f"llm = TransformersLLM(model={str(hf_checkpoint)!r}, quantization='nf4');"
        "llm._backend_and_spec(); print(llm.is_loaded, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_pickle_only_checkpoint_is_refused_with_the_opt_in_named(
    tmp_path: Path, hf_checkpoint: Path
) -> None:
    ckpt = tmp_path / "pickled"
    ckpt.mkdir()
    shutil.copy(hf_checkpoint / "config.json", ckpt)
    (ckpt / "pytorch_model.bin").write_bytes(b"\x80\x04 not really unpickled")
    llm = TransformersLLM(model=str(ckpt))
    with pytest.raises(PickleWeightsRefusedError, match=r"allow_pickle=True") as err:
        llm.invoke("x")
    assert "pytorch_model.bin" in str(err.value)
    # the explicit opt-in passes the check (and changes the cache key)
    spec = TransformersBackend().spec_for(ckpt, allow_pickle=True)
    assert spec.options_dict["allow_pickle"] is True


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("missing", "checkpoint directory not found"),
        ("file", "a transformers checkpoint is a directory"),
        ("noconfig", "no config.json"),
        ("noweights", r"no weights \(\*\.safetensors\)"),
    ],
)
def test_bad_checkpoint_paths_give_specific_errors(tmp_path: Path, setup: str, match: str) -> None:
    path = tmp_path / "ckpt"
    if setup == "file":
        path.write_text("x")
    elif setup == "noconfig":
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"")
    elif setup == "noweights":
        path.mkdir()
        (path / "config.json").write_text("{}")
    exc = FileNotFoundError if setup == "missing" else CheckpointError
    with pytest.raises(exc, match=match):
        TransformersLLM(model=str(path)).invoke("x")


def test_unknown_generation_argument_is_rejected(hf_checkpoint: Path) -> None:
    with pytest.raises(
        TypeError, match=r"unknown generation argument\(s\) \['max_length'\].*max_tokens"
    ):
        _llm(hf_checkpoint).invoke(PROMPT, max_length=3)


def test_missing_bitsandbytes_gives_a_clear_error_and_loads_nothing(hf_checkpoint: Path) -> None:
    code = (
        "import sys; sys.modules['bitsandbytes'] = None\n"
        "from langchain_setraf import TransformersLLM, get_model_cache\n"
        f"llm = TransformersLLM(model={str(hf_checkpoint)!r}, quantization='nf4')\n"
        "try:\n    llm.invoke('x')\nexcept ImportError as e:\n    print('ERR', e)\n"
        "print('LOADED', len(get_model_cache()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "ERR quantization='nf4' needs bitsandbytes" in out.stdout, out.stderr
    assert "langchain-setraf[transformers]" in out.stdout
    assert "LOADED 0" in out.stdout


def test_trust_remote_code_is_never_implied(tmp_path: Path, hf_checkpoint: Path) -> None:
    """A checkpoint shipping its own code: that code must not run unless asked for."""
    ckpt = tmp_path / "remote"
    shutil.copytree(hf_checkpoint, ckpt)
    marker = tmp_path / "pwned"
    (ckpt / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlamaForCausalLM as EvilModel, LlamaConfig as EvilConfig\n"
    )
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForCausalLM": "evil.EvilModel",
    }
    (ckpt / "config.json").write_text(json.dumps(cfg))
    llm = _llm(ckpt, max_tokens=2)
    try:
        llm.invoke(PROMPT)  # may load the built-in llama class, or refuse: never run evil.py
    except ValueError as exc:
        assert "trust_remote_code" in str(exc)
    finally:
        llm.release()
    assert not marker.exists(), "remote code ran without trust_remote_code=True"


# -- real model ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fp32", "bf16", "fp16", "nf4", "fp4", "int8"])
def test_each_mode_loads_checks_dtype_and_generates(
    cache: ModelCache, hf_checkpoint: Path, mode: str
) -> None:
    import bitsandbytes as bnb
    import torch

    llm = _llm(hf_checkpoint, mode, max_tokens=6)
    with llm._lease(lock=False) as handle:  # loads, no forward pass yet
        at_load = _layouts(handle.model)
    text = llm.invoke(PROMPT)
    assert text.strip(), f"{mode}: empty output"
    assert not text.startswith(PROMPT), "the prompt must not be echoed"
    (entry,) = cache.loaded()
    with llm._lease(lock=False) as handle:
        info = handle.info
        model = handle.model
        assert info.mode == mode
        # the layout is settled by the load: generating does not change it
        assert _layouts(model) == at_load
        footprint = info.footprint_bytes
        kv_bytes = handle.kv_cache_bytes  # the KV cache of a call that fills the context
        if mode in ("fp32", "bf16", "fp16"):
            want = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
            assert {p.dtype for p in model.parameters()} == {want}
            assert info.quantized_modules == 0
        elif mode in ("nf4", "fp4"):
            layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
            assert len(layers) == 30 * 7  # every attention and MLP projection of 30 blocks
            assert {m.weight.quant_type for m in layers} == {mode}
            # double quant is on by default; on an AVX512-BF16 CPU bitsandbytes repacks the
            # weights for its kernel and expands the statistics (the documented layout)
            assert info.cpu_repacked is cpu_repack_supported()
            _assert_4bit_layout(layers, repacked=info.cpu_repacked)
        else:
            layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
            assert len(layers) == 30 * 7
    mb = 1024 * 1024
    # bf16 footprint is 257 MB; 4-bit keeps the 56 MB embedding in bf16
    limits = {"fp32": 520, "bf16": 260, "fp16": 260, "nf4": 120, "fp4": 120, "int8": 170}
    assert footprint <= limits[mode] * mb, f"{mode}: footprint {footprint / mb:.0f} MB"
    assert entry.estimated_bytes == footprint + kv_bytes > footprint


def _layouts(model: object) -> list[tuple[bool, bool]]:
    import bitsandbytes as bnb

    return [
        (bool(m.weight.quant_state.nested), _packed(m))
        for m in model.modules()  # type: ignore[attr-defined]
        if isinstance(m, bnb.nn.Linear4bit)
    ]


def _packed(layer: object) -> bool:
    return bool(getattr(layer.weight.quant_state, "packing_format_for_cpu", False))  # type: ignore[attr-defined]


def _assert_4bit_layout(layers: list, *, repacked: bool) -> None:  # type: ignore[type-arg]
    """Double-quantised layout, or bitsandbytes' AVX512-BF16 CPU layout made from it."""
    import torch

    states = [m.weight.quant_state for m in layers]
    if repacked:
        assert all(_packed(m) for m in layers), "not all layers repacked"
        assert not any(s.nested for s in states), "repacked layers keep bf16 statistics"
        assert all(s.original_nested for s in states), "double quant was off at quantisation"
        assert {s.absmax.dtype for s in states} == {torch.bfloat16}
    else:
        assert not any(_packed(m) for m in layers), "repacked although not asked for"
        assert all(s.nested for s in states), "double quant is off"
        assert {s.absmax.dtype for s in states} == {torch.uint8}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["nf4", "fp4"])
def test_cpu_repack_off_keeps_double_quant_through_generation(
    cache: ModelCache, hf_checkpoint: Path, mode: str
) -> None:
    """``cpu_repack=False`` holds on every CPU: the double-quantised layout after forwards."""
    import bitsandbytes as bnb

    llm = _llm(hf_checkpoint, mode, max_tokens=4, cpu_repack=False)
    assert llm.invoke(PROMPT).strip()
    with llm._lease(lock=False) as handle:
        layers = [m for m in handle.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert handle.info.cpu_repacked is False
        _assert_4bit_layout(layers, repacked=False)


def test_cpu_repack_true_without_avx512_bf16_is_refused_before_loading(
    monkeypatch: pytest.MonkeyPatch, cache: ModelCache, hf_checkpoint: Path
) -> None:
    monkeypatch.setattr(hf_backend, "cpu_repack_supported", lambda: False)
    llm = _llm(hf_checkpoint, "nf4", cpu_repack=True)
    with pytest.raises(ValueError, match="cpu_repack=True needs a CPU with AVX512-BF16"):
        llm.invoke(PROMPT)
    assert cache.total_loads == 0 and len(cache) == 0


@pytest.mark.slow
def test_cpu_repack_on_repacks_or_refuses_by_cpu(cache: ModelCache, hf_checkpoint: Path) -> None:
    """``cpu_repack=True``: the repacked layout at load on an AVX512-BF16 CPU, else a clear
    error before any weight is loaded."""
    import bitsandbytes as bnb

    llm = _llm(hf_checkpoint, "nf4", max_tokens=4, cpu_repack=True)
    if not cpu_repack_supported():
        with pytest.raises(ValueError, match="cpu_repack=True needs a CPU with AVX512-BF16"):
            llm.invoke(PROMPT)
        assert cache.total_loads == 0 and len(cache) == 0
        return
    with llm._lease(lock=False) as handle:
        layers = [m for m in handle.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert handle.info.cpu_repacked is True
        _assert_4bit_layout(layers, repacked=True)
    assert llm.invoke(PROMPT).strip()


@pytest.mark.slow
def test_greedy_is_reproducible_and_stream_equals_invoke(
    cache: ModelCache, hf_checkpoint: Path
) -> None:
    llm = _llm(hf_checkpoint, max_tokens=16)
    first = llm.invoke(PROMPT)
    assert llm.invoke(PROMPT) == first
    chunks = list(llm.stream(PROMPT))
    assert len(chunks) > 1, "stream did not stream"
    assert "".join(chunks) == first
    assert "Paris" in first


@pytest.mark.slow
def test_seeded_sampling_is_reproducible(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = TransformersLLM(
        model=str(hf_checkpoint), quantization="bf16", temperature=1.0, seed=7, max_tokens=12
    )
    assert llm.invoke(PROMPT) == llm.invoke(PROMPT)


@pytest.mark.slow
def test_stop_sequences_in_both_modes_and_usage(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = _llm(hf_checkpoint, max_tokens=24)
    full = llm.invoke(PROMPT)
    assert "." in full, full
    want = full[: full.index(".")]
    assert llm.invoke(PROMPT, stop=["."]) == want
    assert "".join(llm.stream(PROMPT, stop=["."])) == want
    result = llm.generate([PROMPT], stop=["."])
    info = result.generations[0][0].generation_info or {}
    assert info["finish_reason"] == "stop"
    assert info["prompt_tokens"] == llm.get_num_tokens(PROMPT)
    assert 0 < info["completion_tokens"] < 24
    assert result.llm_output is not None
    assert result.llm_output["token_usage"]["total_tokens"] == (
        info["prompt_tokens"] + info["completion_tokens"]
    )
    info = llm.generate([PROMPT], max_tokens=5).generations[0][0].generation_info or {}
    assert info["finish_reason"] == "length" and info["completion_tokens"] == 5


@pytest.mark.slow
def test_one_load_shared_across_objects_and_threads_then_release(
    cache: ModelCache, hf_checkpoint: Path
) -> None:
    llms = [_llm(hf_checkpoint, max_tokens=3) for _ in range(3)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            llms[i % 3].invoke(PROMPT)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert cache.total_loads == 1
    (entry,) = cache.loaded()
    assert entry.users == 3
    assert llms[0].release() is True
    assert not llms[1].is_loaded
    llms[2].invoke(PROMPT)
    assert cache.total_loads == 2


@pytest.mark.slow
def test_worker_exception_reaches_the_caller_and_model_stays_usable(
    cache: ModelCache, hf_checkpoint: Path
) -> None:
    bad = _llm(hf_checkpoint, max_tokens=4, model_kwargs={"num_beams": 2, "streamer": None})
    start = time.monotonic()
    with pytest.raises(ValueError):
        bad.invoke(PROMPT)
    with pytest.raises(ValueError):
        list(bad.stream(PROMPT))
    assert time.monotonic() - start < 60, "the failing worker hung the caller"
    assert _llm(hf_checkpoint, max_tokens=3).invoke(PROMPT).strip()


@pytest.mark.slow
def test_abandoned_stream_stops_the_generation(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = _llm(hf_checkpoint, max_tokens=400)
    stream = llm.stream(PROMPT)
    next(stream)
    start = time.monotonic()
    stream.close()
    closed_in = time.monotonic() - start
    assert closed_in < 2.0, f"generation kept running {closed_in:.1f} s after close"
    assert not [t for t in threading.enumerate() if t.name == "setraf-generate"]
    assert llm.invoke(PROMPT, max_tokens=3).strip()


@pytest.mark.slow
async def test_async_does_not_block_the_event_loop(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = _llm(hf_checkpoint, max_tokens=12)
    llm.invoke(PROMPT, max_tokens=1)  # load first
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    text = await llm.ainvoke(PROMPT)
    parts = [c async for c in llm.astream(PROMPT)]
    task.cancel()
    assert text == "".join(parts) == llm.invoke(PROMPT)
    assert ticks > 20, "the event loop was blocked during generation"


def _probe(ckpt: Path, mode: str, cycles: int, *flags: str) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run(
        [sys.executable, str(HELPERS / "hf_memory_probe.py"), str(ckpt), mode, str(cycles), *flags],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "repack"),
    [
        ("fp32", None),
        ("bf16", None),
        ("fp16", None),
        ("nf4", None),  # bitsandbytes' layout for this CPU (repacked on AVX512-BF16)
        ("fp4", None),
        ("int8", None),
        ("nf4", "off"),  # the double-quantised layout, on every CPU
    ],
)
def test_memory_comes_back_without_drift(
    request: pytest.FixtureRequest, hf_checkpoint: Path, mode: str, repack: str | None
) -> None:
    """The transformers memory table of docs/usage.md, one row each, on any CPU: first release
    within 20 % of the footprint of the pre-load level; every later release ≤ first
    release + 5 MB; peak RSS while loading ≤ 1.5 × loaded RSS."""
    flags = [f"--cpu-repack={repack}"] if repack else []
    data = _probe(hf_checkpoint, mode, 5, "--new-tokens=4", *flags)  # memory only, not speed
    expect_repacked = mode in ("nf4", "fp4") and repack is None and cpu_repack_supported()
    assert data["cpu_repacked"] is expect_repacked
    mb = 1024 * 1024
    base = data["baseline"]
    rows = data["cycles"]
    footprint = rows[0]["footprint"]
    first = rows[0]["released"]
    summary = {
        "footprint_mb": round(footprint / mb, 1),
        "loaded_mb": round(statistics.median(r["loaded"] for r in rows) / mb, 1),
        "peak_mb": round(max(r["peak"] for r in rows) / mb, 1),
        "peak_ratio": round(max(r["peak"] / r["loaded"] for r in rows), 2),
        "first_release_mb": round((first - base) / mb, 1),
        "first_release_limit_mb": round(0.2 * footprint / mb, 1),
        "drift_mb": round((max(r["released"] for r in rows[1:]) - first) / mb, 1),
        "cpu_repacked": data["cpu_repacked"],
    }
    request.node.user_properties.extend(summary.items())
    print(f"{mode} cpu_repack={repack}: {json.dumps(summary)}")
    assert first - base <= 0.2 * footprint, (
        f"{mode}: first release {(first - base) / mb:+.1f} MB over the pre-load level "
        f"(limit {0.2 * footprint / mb:.1f} MB)"
    )
    for i, row in enumerate(rows[1:], 1):
        assert row["released"] <= first + 5 * mb, f"{mode}: cycle {i} drifted"
    for i, row in enumerate(rows):
        assert row["loaded"] - base > 0.2 * footprint, f"{mode}: cycle {i}: model not in RSS"
        assert row["peak"] <= 1.5 * row["loaded"], f"{mode}: cycle {i} peak too high"


@pytest.mark.slow
def test_a_released_model_hands_its_tokenizer_to_the_next_load(
    cache: ModelCache, hf_checkpoint: Path, tmp_path: Path
) -> None:
    """Building a fast tokenizer leaves ~1 MB of native heap behind each time, so a released
    model keeps its tokenizer as a spare for the next load of the same checkpoint version;
    the spare is owned by one model at a time and a changed checkpoint never gets it."""
    spares = cache.tokenizers.hf_spare
    spares.clear()
    llm = _llm(hf_checkpoint, max_tokens=2)
    llm.invoke(PROMPT)
    with llm._lease(lock=False) as handle:
        first = handle.tokenizer
    assert llm.release()
    llm.invoke(PROMPT)
    with llm._lease(lock=False) as handle:
        assert handle.tokenizer is first, "the second load built another tokenizer"
        # while loaded the spare slot is empty: nobody else can use this tokenizer
        assert len(spares) == 0
    assert llm.release()
    assert len(spares) == 1

    copy = tmp_path / "ckpt"
    shutil.copytree(hf_checkpoint, copy)
    other = _llm(copy, max_tokens=2)
    other.invoke(PROMPT)
    with other._lease(lock=False) as handle:
        assert handle.tokenizer is not first, "a different checkpoint got another's tokenizer"
    assert other.release()
    spares.clear()
