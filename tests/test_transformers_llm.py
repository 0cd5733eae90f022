"""TransformersLLM on a real checkpoint (SmolLM2-135M, built from the shipped GGUF)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from langchain_setraf import CheckpointError, PickleWeightsRefusedError, TransformersLLM
from langchain_setraf._hf_generate import StopScanner
from langchain_setraf.backends.transformers import TransformersBackend, resolve_mode
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
    with pytest.raises(TypeError, match="unknown generation argument"):
        _llm(hf_checkpoint).invoke(PROMPT, max_tokens=3)


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
    llm = _llm(ckpt, max_new_tokens=2)
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

    llm = _llm(hf_checkpoint, mode, max_new_tokens=6)
    text = llm.invoke(PROMPT)
    assert text.strip(), f"{mode}: empty output"
    assert not text.startswith(PROMPT), "the prompt must not be echoed"
    (entry,) = cache.loaded()
    with llm._lease(lock=False) as handle:
        info = handle.info
        model = handle.model
        assert info.mode == mode
        footprint = info.footprint_bytes
        if mode in ("fp32", "bf16", "fp16"):
            want = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
            assert {p.dtype for p in model.parameters()} == {want}
            assert info.quantized_modules == 0
        elif mode in ("nf4", "fp4"):
            layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
            assert len(layers) == 30 * 7  # every attention and MLP projection of 30 blocks
            assert {m.weight.quant_type for m in layers} == {mode}
            assert all(m.weight.quant_state.nested for m in layers), "double quant is off"
        else:
            layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
            assert len(layers) == 30 * 7
    mb = 1024 * 1024
    # bf16 footprint is 257 MB; 4-bit keeps the 56 MB embedding in bf16
    limits = {"fp32": 520, "bf16": 260, "fp16": 260, "nf4": 120, "fp4": 120, "int8": 170}
    assert footprint <= limits[mode] * mb, f"{mode}: footprint {footprint / mb:.0f} MB"
    assert entry.estimated_bytes == footprint


@pytest.mark.slow
def test_greedy_is_reproducible_and_stream_equals_invoke(
    cache: ModelCache, hf_checkpoint: Path
) -> None:
    llm = _llm(hf_checkpoint, max_new_tokens=16)
    first = llm.invoke(PROMPT)
    assert llm.invoke(PROMPT) == first
    chunks = list(llm.stream(PROMPT))
    assert len(chunks) > 1, "stream did not stream"
    assert "".join(chunks) == first
    assert "Paris" in first


@pytest.mark.slow
def test_seeded_sampling_is_reproducible(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = TransformersLLM(
        model=str(hf_checkpoint), quantization="bf16", temperature=1.0, seed=7, max_new_tokens=12
    )
    assert llm.invoke(PROMPT) == llm.invoke(PROMPT)


@pytest.mark.slow
def test_stop_sequences_in_both_modes_and_usage(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = _llm(hf_checkpoint, max_new_tokens=24)
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
    info = llm.generate([PROMPT], max_new_tokens=5).generations[0][0].generation_info or {}
    assert info["finish_reason"] == "length" and info["completion_tokens"] == 5


@pytest.mark.slow
def test_one_load_shared_across_objects_and_threads_then_release(
    cache: ModelCache, hf_checkpoint: Path
) -> None:
    llms = [_llm(hf_checkpoint, max_new_tokens=3) for _ in range(3)]
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
    bad = _llm(hf_checkpoint, max_new_tokens=4, model_kwargs={"num_beams": 2, "streamer": None})
    start = time.monotonic()
    with pytest.raises(ValueError):
        bad.invoke(PROMPT)
    with pytest.raises(ValueError):
        list(bad.stream(PROMPT))
    assert time.monotonic() - start < 60, "the failing worker hung the caller"
    assert _llm(hf_checkpoint, max_new_tokens=3).invoke(PROMPT).strip()


@pytest.mark.slow
def test_abandoned_stream_stops_the_generation(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = _llm(hf_checkpoint, max_new_tokens=400)
    stream = llm.stream(PROMPT)
    next(stream)
    start = time.monotonic()
    stream.close()
    closed_in = time.monotonic() - start
    assert closed_in < 2.0, f"generation kept running {closed_in:.1f} s after close"
    assert not [t for t in threading.enumerate() if t.name == "setraf-generate"]
    assert llm.invoke(PROMPT, max_new_tokens=3).strip()


@pytest.mark.slow
async def test_async_does_not_block_the_event_loop(cache: ModelCache, hf_checkpoint: Path) -> None:
    llm = _llm(hf_checkpoint, max_new_tokens=12)
    llm.invoke(PROMPT, max_new_tokens=1)  # load first
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


def _probe(ckpt: Path, mode: str, cycles: int) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run(
        [sys.executable, str(HELPERS / "hf_memory_probe.py"), str(ckpt), mode, str(cycles)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bf16", "fp32", "nf4"])
def test_memory_comes_back_without_drift(hf_checkpoint: Path, mode: str) -> None:
    """Issue targets: first release within 20 % of the footprint of the pre-load level;
    every later release ≤ first release + 5 MB; peak RSS while loading ≤ 1.5 × final."""
    data = _probe(hf_checkpoint, mode, 5)
    mb = 1024 * 1024
    base = data["baseline"]
    rows = data["cycles"]
    footprint = rows[0]["footprint"]
    first = rows[0]["released"]
    assert first - base <= 0.2 * footprint, (
        f"{mode}: first release {(first - base) / mb:+.1f} MB over the pre-load level "
        f"(limit {0.2 * footprint / mb:.1f} MB)"
    )
    for i, row in enumerate(rows[1:], 1):
        assert row["released"] <= first + 5 * mb, f"{mode}: cycle {i} drifted"
    for i, row in enumerate(rows):
        assert row["loaded"] - base > 0.2 * footprint, f"{mode}: cycle {i}: model not in RSS"
        assert row["peak"] <= 1.5 * row["loaded"], f"{mode}: cycle {i} peak too high"
