"""Reliability under load, faults and hostile model files (issue: reliability and security).

Figures printed here (-s) are recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from langchain_setraf import GGUFLLM, memory_snapshot
from langchain_setraf.cache import ModelCache

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from malformed_gguf import make_cases

CHILD = """
import json, sys
from langchain_setraf import GGUFLLM
try:
    GGUFLLM(model_path=sys.argv[1], max_tokens=1).invoke("x")
    print(json.dumps({"type": None, "msg": "loaded"}))
except BaseException as exc:
    print(json.dumps({"type": type(exc).__name__, "msg": str(exc)}))
"""

#: The only exceptions a hostile model path may produce: specific, and all Python.
EXPECTED = {"GGUFFormatError", "FileNotFoundError", "IsADirectoryError", "ValueError"}


def _load_in_child(path: Path) -> tuple[int, dict[str, str] | None, str]:
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return -999, None, "timed out: the load hung"
    lines = out.stdout.strip().splitlines()
    return out.returncode, (json.loads(lines[-1]) if lines else None), out.stderr[-500:]


@pytest.mark.slow
def test_malformed_gguf_files_fail_cleanly_in_child_processes(
    tmp_path: Path, smollm2_path: Path
) -> None:
    cases = make_cases(tmp_path / "cases", smollm2_path)
    assert len(cases) >= 40
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: (c[0], *_load_in_child(c[1])), cases))
    failures = []
    for name, rc, data, err in results:
        if rc != 0:
            failures.append(f"{name}: exit code {rc} (signal = crash) {err}")
        elif data is None or data["type"] not in EXPECTED:
            failures.append(f"{name}: unexpected outcome {data}")
        elif data["type"] == "GGUFFormatError" and "gguf" not in data["msg"].lower():
            failures.append(f"{name}: error does not name the file: {data['msg']}")
    kinds: dict[str, int] = {}
    for _, _, data, _ in results:
        if data:
            kinds[data["type"]] = kinds.get(data["type"], 0) + 1
    print(f"\n{len(cases)} hostile model paths: {kinds}")
    assert not failures, "\n".join(failures)
    # only the structurally valid toy file reaches llama.cpp, which refuses it
    by_name = {name: data for name, _, data, _ in results}
    assert by_name["valid-header-not-a-model"]["type"] == "ValueError"  # type: ignore[index]
    assert by_name["fifo"]["type"] == "GGUFFormatError"  # type: ignore[index]


@pytest.mark.slow
def test_soak_mixed_calls_two_models_and_interleaved_releases(cache: ModelCache) -> None:
    """8 threads × 25 mixed calls (invoke, stream, ainvoke, batch) on one GGUF model, a
    second model alternating, release() interleaved: no crash, no hang, complete outputs."""
    main = GGUFLLM(temperature=0, max_tokens=4, n_ctx=512)
    other = GGUFLLM(temperature=0, max_tokens=4, n_ctx=256)  # a second cache entry
    spec_main, spec_other = main._backend_and_spec()[1], other._backend_and_spec()[1]
    errors: list[str] = []
    calls = 0
    lock = threading.Lock()

    def check(text: object, what: str) -> None:
        if not isinstance(text, str):
            errors.append(f"{what}: {text!r}")

    def worker(t: int) -> None:
        nonlocal calls
        for i in range(25):
            k = (t + i) % 6
            llm = other if (t + i) % 4 == 0 else main
            try:
                if k == 0:
                    check(llm.invoke(f"Count {i}:"), "invoke")
                elif k == 1:
                    chunks = list(llm.stream(f"Say {i}"))
                    check("".join(chunks), "stream")
                elif k == 2:
                    check(asyncio.run(llm.ainvoke(f"Hello {i}")), "ainvoke")
                elif k == 3:
                    outs = llm.batch([f"A{i}", f"B{i}"])
                    if len(outs) != 2:
                        errors.append("batch size")
                    for o in outs:
                        check(o, "batch")
                elif k == 4:
                    r = llm.generate([f"Q{i}"])
                    info = r.generations[0][0].generation_info or {}
                    if info.get("completion_tokens", 0) < 1 or info.get("finish_reason") is None:
                        errors.append(f"incomplete generation: {info}")
                else:
                    main.release(wait=True, timeout=120)
            except Exception as exc:  # reported below
                errors.append(f"{type(exc).__name__}: {exc}")
            with lock:
                calls += 1

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=900)
    duration = time.monotonic() - start
    assert not [th for th in threads if th.is_alive()], "hang: a worker never finished"
    assert not errors, errors[:10]
    assert calls == 200
    for spec in (spec_main, spec_other):
        expected = cache.release_counts[spec] + (1 if spec in cache else 0)
        assert cache.load_counts[spec] == expected, (spec, cache.load_counts[spec], expected)
    print(
        f"\nsoak: 200 calls in {duration:.1f} s ({200 / duration:.2f} calls/s), loads "
        f"main={cache.load_counts[spec_main]} other={cache.load_counts[spec_other]}, "
        f"releases main={cache.release_counts[spec_main]}"
    )


def _endless(max_tokens: int) -> GGUFLLM:
    """The real model with its end-of-sequence token banned: it generates until told."""
    from langchain_setraf.backends.gguf.file import read_gguf_header
    from langchain_setraf.models import default_gguf_path

    eos = int(read_gguf_header(default_gguf_path()).metadata["tokenizer.ggml.eos_token_id"])
    return GGUFLLM(temperature=0, max_tokens=max_tokens, model_kwargs={"logit_bias": {eos: -100.0}})


@pytest.mark.slow
def test_release_during_generation_finishes_it_then_gives_memory_back(
    cache: ModelCache,
) -> None:
    llm = _endless(48)
    llm.invoke("warm", max_tokens=1)
    loaded = memory_snapshot().rss
    result: dict[str, object] = {}

    def gen() -> None:
        r = llm.generate(["Write a long story about rocks."])
        result["info"] = r.generations[0][0].generation_info
        result["text"] = r.generations[0][0].text

    th = threading.Thread(target=gen)
    th.start()
    while not any(m.active for m in cache.loaded()):  # the generation is running
        time.sleep(0.01)
    t0 = time.monotonic()
    assert llm.release() is True  # waits for it
    waited = time.monotonic() - t0
    th.join(timeout=60)
    info = result["info"]
    assert isinstance(info, dict) and info["completion_tokens"] == 48, result
    assert not llm.is_loaded
    after = memory_snapshot().rss
    print(f"\nrelease waited {waited:.2f} s for the running generation; RSS "
          f"{loaded / 2**20:.0f} → {after / 2**20:.0f} MB")  # fmt: skip
    assert loaded - after > 50 * 2**20, "memory was not given back"


@pytest.mark.slow
async def test_cancelled_or_abandoned_streams_stop_promptly(cache: ModelCache) -> None:
    llm = _endless(400)
    llm.invoke("warm", max_tokens=1)
    # abandoned sync stream
    stream = llm.stream("Tell me everything about geology.")
    next(stream)
    t0 = time.monotonic()
    stream.close()
    sync_stop = time.monotonic() - t0

    # timed-out async stream
    async def consume() -> None:
        async for _ in llm.astream("Tell me everything about geology."):
            pass

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consume(), timeout=0.5)
    t0 = time.monotonic()
    text = llm.invoke("Hi", max_tokens=2)  # waits for the lock: the old stream must stop
    async_stop = time.monotonic() - t0
    print(f"\nabandoned stream stopped in {sync_stop * 1000:.0f} ms; after an asyncio "
          f"timeout the next call started within {async_stop * 1000:.0f} ms")  # fmt: skip
    assert sync_stop < 1.0 and async_stop < 3.0
    assert isinstance(text, str)
