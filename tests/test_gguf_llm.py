"""GGUFLLM with the real SmolLM2-135M-Instruct GGUF model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate

from langchain_setraf import GGUFLLM, release_all
from langchain_setraf.cache import ModelCache

pytestmark = pytest.mark.slow

PROMPT = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


def test_constructor_does_not_load(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0)
    assert cache.total_loads == 0 or not llm.is_loaded
    assert len(cache) == 0


def test_invoke_returns_text_and_generation_info(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=16, seed=1)
    result = llm.generate([PROMPT])
    gen = result.generations[0][0]
    assert isinstance(gen.text, str) and gen.text.strip()
    info = gen.generation_info or {}
    assert info["finish_reason"] in {"stop", "length"}
    assert info["prompt_tokens"] > 5
    assert 0 < info["completion_tokens"] <= 16
    assert result.llm_output is not None
    assert result.llm_output["token_usage"]["completion_tokens"] == info["completion_tokens"]
    assert llm.invoke(PROMPT) == gen.text


def test_chain_with_output_parser(cache: ModelCache) -> None:
    chain = (
        PromptTemplate.from_template("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")
        | GGUFLLM(temperature=0, max_tokens=12)
        | StrOutputParser()
    )
    out = chain.invoke({"q": "Say hello."})
    assert isinstance(out, str) and out.strip()


def test_two_objects_different_temperatures_share_one_load(cache: ModelCache) -> None:
    a = GGUFLLM(temperature=0.0, max_tokens=4)
    b = GGUFLLM(temperature=0.9, max_tokens=4, top_k=10)
    a.invoke(PROMPT)
    b.invoke(PROMPT)
    assert cache.total_loads == 1
    (model,) = cache.loaded()
    assert model.users == 2
    assert model.backend == "gguf"
    assert model.estimated_bytes > 90_000_000
    assert model.load_seconds > 0


def test_load_options_change_the_key(cache: ModelCache) -> None:
    GGUFLLM(max_tokens=2, n_ctx=512).invoke("Hi")
    GGUFLLM(max_tokens=2, n_ctx=1024).invoke("Hi")
    assert cache.total_loads == 2
    assert len(cache.loaded()) == 2


def test_same_file_spelled_differently_is_one_key(
    cache: ModelCache, smollm2_path: Path, tmp_path: Path
) -> None:
    link = tmp_path / "alias.gguf"
    link.symlink_to(smollm2_path)
    GGUFLLM(model_path=str(link), max_tokens=2).invoke("Hi")
    GGUFLLM(model_path=str(smollm2_path), max_tokens=2).invoke("Hi")
    GGUFLLM(max_tokens=2).invoke("Hi")
    assert cache.total_loads == 1


def test_eight_threads_four_calls_one_load(cache: ModelCache) -> None:
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)
    llms = [GGUFLLM(temperature=0.5, max_tokens=6, seed=i) for i in range(8)]

    def work(i: int) -> None:
        llm = llms[i]
        barrier.wait()
        for _ in range(4):
            try:
                text = llm.invoke(PROMPT)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                results.append(text)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == []
    assert len(results) == 32
    assert cache.total_loads == 1
    assert cache.loaded()[0].users == 8
    del llms[:4]
    assert cache.loaded()[0].users == 4  # users are counted weakly


def test_stream_joined_equals_invoke(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, seed=42, max_tokens=24)
    chunks = list(llm.stream(PROMPT))
    assert len(chunks) > 2
    assert "".join(chunks) == llm.invoke(PROMPT)


def test_stop_sequences_non_streaming_and_streaming(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, seed=0, max_tokens=40)
    prompt = (
        "<|im_start|>user\nCount from 1 to 10 separated by commas.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    full = llm.invoke(prompt)
    assert "4" in full, full
    stop = ["4"]
    cut = llm.invoke(prompt, stop=stop)
    streamed = "".join(llm.stream(prompt, stop=stop))
    assert "4" not in cut and "4" not in streamed
    assert cut == streamed == full[: full.index("4")]
    # stop set on the object is honoured too
    assert GGUFLLM(temperature=0, seed=0, max_tokens=40, stop=stop).invoke(prompt) == cut


def test_streaming_field_fires_new_token_callbacks(cache: ModelCache) -> None:
    class Collect(BaseCallbackHandler):
        def __init__(self) -> None:
            self.tokens: list[str] = []

        def on_llm_new_token(self, token: str, **kwargs: object) -> None:
            self.tokens.append(token)

    handler = Collect()
    llm = GGUFLLM(temperature=0, max_tokens=10, streaming=True, callbacks=[handler])
    text = llm.invoke(PROMPT)
    assert len(handler.tokens) >= 2
    assert "".join(handler.tokens) == text


def test_get_num_tokens_uses_model_tokenizer(cache: ModelCache) -> None:
    llm = GGUFLLM()
    assert llm.get_num_tokens("hello") == 1
    assert llm.get_num_tokens("<|im_start|>") == 1  # a special token of SmolLM2
    assert llm.get_num_tokens("electrical resistivity tomography") > 3


def test_batch(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=6)
    outs = llm.batch([PROMPT, "The sky is"])
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
    assert cache.total_loads == 1


async def test_async_does_not_block_event_loop(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=32, seed=3)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    text = await llm.ainvoke(PROMPT)
    chunks = [c async for c in llm.astream(PROMPT)]
    stop.set()
    await task
    assert text.strip()
    assert "".join(chunks) == text
    assert ticks > 10, "the event loop was blocked during generation"


async def test_abandoned_async_stream_frees_the_model_lock(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=200)
    agen = llm.astream(PROMPT)
    first = await agen.__anext__()
    assert isinstance(first, str)
    await agen.aclose()
    # the per-model lock must be free again: a new call completes
    assert (await asyncio.wait_for(llm.ainvoke(PROMPT, max_tokens=3), timeout=60)) is not None


def test_release_empties_cache_and_next_call_reloads(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0, max_tokens=4)
    llm.invoke(PROMPT)
    assert llm.is_loaded and len(cache) == 1
    assert llm.release() is True
    assert len(cache) == 0 and not llm.is_loaded
    assert llm.release() is False
    llm.invoke(PROMPT)
    assert cache.total_loads == 2
    assert release_all() == 1
    assert len(cache) == 0


def test_release_waits_for_running_generation(cache: ModelCache) -> None:
    llm = GGUFLLM(temperature=0.8, max_tokens=64, seed=5)
    llm.invoke("Hi", max_tokens=1)
    out: dict[str, object] = {}
    started = threading.Event()

    def generate() -> None:
        chunks = []
        for c in llm.stream(PROMPT):
            started.set()
            if c:
                chunks.append(c)
                out["last_token_at"] = time.monotonic()
        out["text"] = "".join(chunks)
        out["chunks"] = len(chunks)

    t = threading.Thread(target=generate)
    t.start()
    assert started.wait(60)
    assert llm.release() is True
    released_at = time.monotonic()
    t.join(60)
    assert isinstance(out.get("text"), str) and out["text"]
    assert out["chunks"] > 3
    assert out["last_token_at"] <= released_at  # the release waited for the generation
    assert len(cache) == 0


def test_release_from_inside_own_stream_is_refused(cache: ModelCache) -> None:
    llm = GGUFLLM(max_tokens=8)
    stream = llm.stream(PROMPT)
    next(stream)
    with pytest.raises(RuntimeError, match="deadlock"):
        llm.release()
    stream.close()
    assert llm.release() is True


def test_memory_returns_after_release_and_does_not_drift() -> None:
    """RSS after release ≤ baseline + 10 MB on every one of 5 load/release cycles."""
    probe = Path(__file__).parent / "helpers" / "memory_probe.py"
    proc = subprocess.run(
        [sys.executable, str(probe), "gguf", "5"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    mb = 1024 * 1024
    base = data["baseline"]
    for i, row in enumerate(data["cycles"]):
        assert row["loaded"] - base > 50 * mb, f"cycle {i}: model did not appear in RSS"
        assert row["released"] <= base + 10 * mb, (
            f"cycle {i}: RSS after release {row['released'] / mb:.1f} MB > "
            f"baseline {base / mb:.1f} MB + 10 MB"
        )
    first = data["cycles"][0]["released"]
    assert data["cycles"][-1]["released"] - first <= 5 * mb, "RSS drifts over cycles"


def test_import_does_not_pull_torch_or_llama_cpp() -> None:
    code = (
        "import sys, langchain_setraf as s; s.GGUFLLM; s.memory_snapshot();"
        "print('torch' in sys.modules, 'llama_cpp' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_cli_generate_prints_text_and_memory() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "langchain_setraf.cli",
            "generate",
            "Say hi.",
            "--max-tokens",
            "8",
            "--temperature",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert "memory after release" in proc.stderr and "RSS" in proc.stderr


REPACK_PROBE = """
import json, sys
from langchain_setraf import GGUFLLM, memory_snapshot
from langchain_setraf.memory import give_back_memory
import llama_cpp
give_back_memory()
before = memory_snapshot()
llm = GGUFLLM(model_path=sys.argv[1], repack=sys.argv[2] == "on", temperature=0, max_tokens=12)
backend, spec = llm._backend_and_spec()
estimate = backend.estimate_bytes(spec)
text = llm.invoke("List the numbers from 1 to 10: 1, 2,")
after = memory_snapshot()
print(json.dumps({"text": text, "estimate": estimate, "rss": after.rss - before.rss,
                  "anon": after.anon - before.anon}))
"""


def _repack_probe(path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REPACK_PROBE, str(path), mode],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _repack_row(out: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_repack_switch_moves_the_weights_copy_in_and_out_of_anonymous_memory(
    smollm2_q4_0: Path,
) -> None:
    """Q4_0 is repacked by llama.cpp's CPU backend: ``repack=True`` adds an anonymous copy
    of the repackable matrices, ``repack=False`` (our default) keeps them file-backed; the
    estimate follows both, and both layouts generate."""
    from langchain_setraf.backends.gguf.estimate import repackable_bytes
    from langchain_setraf.backends.gguf.file import read_gguf_header
    from langchain_setraf.backends.gguf.repack_probe import repack_verdict

    repackable = repackable_bytes(read_gguf_header(smollm2_q4_0))
    assert repackable > 40 * 2**20
    off = _repack_row(_repack_probe(smollm2_q4_0, "off"))
    verdict = repack_verdict()
    assert verdict is not None
    if not verdict.supported:
        # where the extra buffer types crash, repack=True is refused, and the process lives
        refused = _repack_probe(smollm2_q4_0, "on")
        assert refused.returncode == 1, (refused.returncode, refused.stderr[-3000:])
        assert "RepackUnsupportedError" in refused.stderr and "repack=False" in refused.stderr
        pytest.skip(
            f"repack=True is refused on this CPU ({verdict.cpu}): {verdict.detail}; the "
            "repacked copy cannot be measured here (the refusal and repack=False were checked)"
        )
    on = _repack_row(_repack_probe(smollm2_q4_0, "on"))
    extra_anon = int(on["anon"]) - int(off["anon"])  # type: ignore[call-overload]
    assert 0.75 * repackable <= extra_anon <= 1.25 * repackable, (extra_anon, repackable)
    for row in (off, on):
        assert "3" in str(row["text"])
        ratio = int(row["estimate"]) / int(row["rss"])  # type: ignore[call-overload]
        assert 0.75 <= ratio <= 1.25, row


def test_repack_is_a_load_option_and_the_default_is_off(cache: ModelCache) -> None:
    off, on = GGUFLLM(), GGUFLLM(repack=True)
    assert off.repack is False
    assert off._backend_and_spec()[1] != on._backend_and_spec()[1]
    assert off._backend_and_spec()[1].options_dict["repack"] is False


def test_model_params_patch_is_scoped_and_checked() -> None:
    import llama_cpp

    from langchain_setraf.backends.gguf.backend import model_params

    original = llama_cpp.llama_cpp.llama_model_default_params
    assert original().use_extra_bufts is True  # llama.cpp's own default
    with model_params(llama_cpp, use_extra_bufts=False):
        assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert llama_cpp.llama_cpp.llama_model_default_params is original
    with pytest.raises(ValueError, match="no_such_field"):
        with model_params(llama_cpp, no_such_field=1):
            pass
    assert llama_cpp.llama_cpp.llama_model_default_params is original
