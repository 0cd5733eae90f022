"""Cache correctness under concurrency and odd lifecycles (issue #13 §4).

Real SmolLM2 GGUF / safetensors checkpoint wherever a real model shows the behaviour. A
tiny in-test backend (``_GatedBackend``) is used only where a test must hold a load or a
close open at a chosen moment, which no real backend lets a test do.

Bounded waits (``join(timeout=…)``, ``Event.wait(…)``) only keep a failing test from
hanging; no assertion here is about speed.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.threads import in_thread
from langchain_setraf import GGUFLLM
from langchain_setraf.backends.base import LoadSpec
from langchain_setraf.cache import InsufficientMemoryError, ModelBusyError, ModelCache

MB = 2**20
BOUND = 60.0  # seconds: only ever reached by a failing (hanging) test


# -- a backend whose load and close a test can hold open -----------------------------------
class _GatedHandle:
    def __init__(self, owner: _GatedBackend, name: str) -> None:
        self.owner, self.name = owner, name

    @property
    def estimated_bytes(self) -> int:
        return self.owner.size

    def close(self) -> None:
        self.owner.closing.set()
        if not self.owner.close_gate.wait(BOUND):
            raise RuntimeError("test close gate never opened")
        with self.owner.lock:
            del self.owner.resident[self.name]


class _GatedBackend:
    """Loads "models" of ``size`` bytes; each load waits for ``load_gate``, each close for
    ``close_gate``; ``peak`` is the most bytes ever resident at once."""

    name = "gated-test"

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.load_gate, self.close_gate = threading.Event(), threading.Event()
        self.load_gate.set()
        self.close_gate.set()
        self.started: dict[str, threading.Event] = {}
        self.closing = threading.Event()
        self.resident: dict[str, int] = {}
        self.peak = 0

    def spec(self, name: str) -> LoadSpec:
        self.started[name] = threading.Event()
        return LoadSpec.create(self.name, (f"/gated/{name}", 0, 0), {})

    def estimate_bytes(self, spec: LoadSpec) -> int:
        return self.size

    def load(self, spec: LoadSpec) -> _GatedHandle:
        name = spec.path.rsplit("/", 1)[-1]
        self.started[name].set()
        if not self.load_gate.wait(BOUND):
            raise RuntimeError("test load gate never opened")
        with self.lock:
            self.resident[name] = self.size
            self.peak = max(self.peak, sum(self.resident.values()))
        return _GatedHandle(self, name)


def _use(cache: ModelCache, backend: _GatedBackend, spec: LoadSpec) -> Callable[[], None]:
    def fn() -> None:
        with cache.lease(backend, spec):
            pass

    return fn


# -- 1. one atomic budget decision; loading and closing models count ------------------------
def test_budget_counts_a_model_that_is_still_loading() -> None:
    cache = ModelCache()
    backend = _GatedBackend(64 * MB)
    cache.max_memory = 96 * MB  # room for one model, not two
    a, b = backend.spec("a"), backend.spec("b")
    backend.load_gate.clear()
    ta, out_a = in_thread(_use(cache, backend, a))
    assert backend.started["a"].wait(BOUND)  # a is loading, nothing resident yet
    tb, out_b = in_thread(_use(cache, backend, b))
    tb.join(10)  # refused at once when fixed; before, b's load waits at the gate too
    backend.load_gate.set()
    ta.join(BOUND)
    tb.join(BOUND)
    assert not ta.is_alive() and not tb.is_alive()
    assert backend.peak <= cache.max_memory, f"{backend.peak / MB:.0f} MB were resident"
    assert "error" not in out_a, out_a
    assert isinstance(out_b.get("error"), InsufficientMemoryError), out_b
    assert out_b["error"].used == 64 * MB  # a's reservation counted
    assert [m.key for m in cache.loaded()] == [a]
    cache.release_all()


def test_budget_counts_a_model_that_is_still_closing() -> None:
    cache = ModelCache()
    backend = _GatedBackend(64 * MB)
    cache.max_memory = 96 * MB
    a, b = backend.spec("a"), backend.spec("b")
    _use(cache, backend, a)()
    backend.close_gate.clear()
    tr, out_r = in_thread(lambda: cache.release(a))
    assert backend.closing.wait(BOUND)  # a's close has begun; its memory is still held
    tb, out_b = in_thread(_use(cache, backend, b))
    backend.started["b"].wait(2)  # before the fix b loads now, beside a
    backend.close_gate.set()
    tr.join(BOUND)
    tb.join(BOUND)
    assert not tr.is_alive() and not tb.is_alive()
    assert out_r.get("value") is True and "error" not in out_b, (out_r, out_b)
    assert backend.peak <= cache.max_memory, f"{backend.peak / MB:.0f} MB were resident"
    assert [m.key for m in cache.loaded()] == [b]
    cache.release_all()


def test_many_threads_many_models_never_exceed_the_budget() -> None:
    cache = ModelCache()
    backend = _GatedBackend(40 * MB)
    cache.max_memory = 100 * MB  # two at a time
    specs = [backend.spec(f"m{i}") for i in range(6)]
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait(BOUND)
        for k in range(10):
            try:
                _use(cache, backend, specs[(i + k) % len(specs)])()
            except InsufficientMemoryError:
                pass  # refused while the others were busy: allowed, never over budget
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(BOUND)
    assert not [th for th in threads if th.is_alive()], "a worker hung"
    assert not errors, errors[:3]
    assert backend.peak <= cache.max_memory, f"{backend.peak / MB:.0f} MB were resident"
    cache.release_all()


def test_gguf_layers_on_a_gpu_are_not_host_memory(
    smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp

    from langchain_setraf.backends.gguf.backend import GGUFBackend
    from langchain_setraf.backends.gguf.file import read_gguf_header

    backend = GGUFBackend()
    info = read_gguf_header(smollm2_path)
    cpu = backend.estimate_bytes(backend.spec_for(smollm2_path, n_ctx=512, n_gpu_layers=0))
    every = backend.spec_for(smollm2_path, n_ctx=512, n_gpu_layers=-1)
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)
    assert backend.estimate_bytes(every) == cpu  # a CPU-only llama.cpp ignores n_gpu_layers
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    gpu = backend.estimate_bytes(every)
    embd = next(t.nbytes for t in info.tensors if t.name == "token_embd.weight")
    blocks = sum(t.nbytes for t in info.tensors if t.name.startswith("blk."))
    assert gpu <= cpu - blocks, (gpu / MB, cpu / MB, blocks / MB)
    assert gpu >= embd  # the token embedding stays on the host
    n_layer = int(info.arch_value("block_count"))
    half = backend.estimate_bytes(
        backend.spec_for(smollm2_path, n_ctx=512, n_gpu_layers=n_layer // 2)
    )
    assert gpu < half < cpu


# -- 7 (and 1 for transformers). quantization="auto" on CUDA without bitsandbytes -----------
class _StopLoad(Exception):
    """Raised by the patched ``from_pretrained`` once it has seen the load's arguments."""


def _fake_cuda_without_bnb(monkeypatch: pytest.MonkeyPatch) -> Any:
    import torch

    from langchain_setraf.backends.transformers import backend as tb

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tb, "_bnb_available", lambda: False)
    return torch


def test_auto_quantization_on_cuda_without_bitsandbytes_loads_fp16_on_the_gpu(
    hf_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    from langchain_setraf.backends.transformers.backend import TransformersBackend

    torch = _fake_cuda_without_bnb(monkeypatch)
    seen: dict[str, Any] = {}

    def capture(path: str, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise _StopLoad

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", capture)
    backend = TransformersBackend()
    with pytest.raises(_StopLoad):
        backend.load(backend.spec_for(hf_checkpoint, quantization="auto"))
    assert seen["dtype"] == torch.float16
    assert seen["device_map"] == "cuda", seen  # not None: that is the CPU
    seen.clear()
    with pytest.raises(_StopLoad):  # an explicit CPU placement is kept
        backend.load(backend.spec_for(hf_checkpoint, quantization="auto", device_map="cpu"))
    assert seen["device_map"] == "cpu" and seen["dtype"] == torch.bfloat16


def test_transformers_weights_on_a_gpu_are_not_host_memory(
    hf_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_setraf.backends.transformers.backend import TransformersBackend

    backend = TransformersBackend()
    cpu = backend.estimate_bytes(backend.spec_for(hf_checkpoint, quantization="bf16"))
    _fake_cuda_without_bnb(monkeypatch)
    for options in ({"quantization": "auto"}, {"quantization": "fp16", "device_map": "cuda"}):
        gpu = backend.estimate_bytes(backend.spec_for(hf_checkpoint, **options))
        assert gpu < cpu / 4, (options, gpu / MB, cpu / MB)
    on_cpu = backend.estimate_bytes(
        backend.spec_for(hf_checkpoint, quantization="fp16", device_map="cpu")
    )
    assert on_cpu == cpu


# -- 2. keep_alive=0 loads once per call; the last request sets the expiry ------------------
@pytest.mark.slow
def test_chat_transformers_keep_alive_zero_loads_once_per_call(
    hf_checkpoint: Path, cache: ModelCache
) -> None:
    from langchain_setraf import ChatTransformers

    chat = ChatTransformers(
        model=str(hf_checkpoint), quantization="bf16", max_tokens=2, temperature=0, keep_alive=0
    )
    chat.invoke("Hi")
    assert cache.total_loads == 1 and not chat.is_loaded
    assert len(list(chat.stream("Hi"))) >= 1
    assert cache.total_loads == 2 and not chat.is_loaded
    assert cache.total_loads == sum(cache.release_counts.values())


@pytest.mark.slow
def test_keep_alive_the_last_request_to_finish_sets_the_expiry(cache: ModelCache) -> None:
    llm = GGUFLLM(max_tokens=2, n_ctx=256)
    backend, spec = llm._backend_and_spec()
    # a (keep_alive=0) starts, b (default: keep) starts, a ends, b ends last: kept
    a = cache.lease(backend, spec, lock=False, keep_alive=0)
    b = cache.lease(backend, spec, lock=False)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    assert spec in cache, "the last request (default keep_alive) did not keep the model"
    # now b starts, a starts, b ends, a (keep_alive=0) ends last: released
    b = cache.lease(backend, spec, lock=False)
    a = cache.lease(backend, spec, lock=False, keep_alive=0)
    b.__enter__()
    a.__enter__()
    b.__exit__(None, None, None)
    assert spec in cache  # a is still running
    a.__exit__(None, None, None)
    assert spec not in cache
    assert cache.total_loads == 1


# -- 3. release() after the model file was deleted or replaced ------------------------------
@pytest.fixture()
def gguf_copy(smollm2_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model.gguf"
    shutil.copyfile(smollm2_path, target)
    return target


def _replace(path: Path, source: Path) -> None:
    """Replace ``path`` by a new file (same bytes, same size and mtime, a new inode)."""
    fresh = path.with_name("incoming.gguf")
    shutil.copyfile(source, fresh)
    st = path.stat()
    os.utime(fresh, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(fresh, path)


@pytest.mark.slow
def test_release_after_the_model_file_was_deleted(gguf_copy: Path, cache: ModelCache) -> None:
    llm = GGUFLLM(model_path=str(gguf_copy), max_tokens=2, n_ctx=256)
    llm.invoke("x")
    gguf_copy.unlink()
    assert llm.is_loaded
    assert llm.release() is True
    assert len(cache) == 0 and not llm.is_loaded
    assert llm.release() is False


@pytest.mark.slow
def test_release_after_the_model_file_was_replaced(
    gguf_copy: Path, smollm2_path: Path, cache: ModelCache
) -> None:
    llm = GGUFLLM(model_path=str(gguf_copy), max_tokens=2, n_ctx=256)
    llm.invoke("x")
    old = cache.loaded()[0].key
    _replace(gguf_copy, smollm2_path)  # even with the same size and mtime
    assert llm._backend_and_spec()[1] != old, "a replaced file must get a new cache key"
    assert llm.release() is True
    assert len(cache) == 0
    # replaced again while loaded: the next call loads the new file and the old copy,
    # which no lease can reach any more, is released
    llm.invoke("x")
    _replace(gguf_copy, smollm2_path)
    llm.invoke("x")
    assert len(cache) == 1 and cache.total_loads == 3
    assert sum(cache.release_counts.values()) == 2


# -- 4. a suspended stream cannot block a model forever --------------------------------------
def _endless(max_tokens: int = 64) -> GGUFLLM:
    """The real model with its end-of-sequence token banned: a stream that does not end
    before it is told to."""
    from langchain_setraf.backends.gguf.file import read_gguf_header
    from langchain_setraf.models import default_gguf_path

    eos = int(read_gguf_header(default_gguf_path()).metadata["tokenizer.ggml.eos_token_id"])
    return GGUFLLM(
        temperature=0, max_tokens=max_tokens, n_ctx=256, model_kwargs={"logit_bias": {eos: -100.0}}
    )


def _started_stream(llm: GGUFLLM) -> Any:
    stream = llm.stream("Tell me a long story about rocks.")
    assert next(stream), "the stream ended before it could be suspended"
    return stream


@pytest.mark.slow
def test_a_suspended_stream_makes_other_calls_fail_clearly_not_hang(
    cache: ModelCache,
) -> None:
    llm = _endless()
    stream = _started_stream(llm)  # started, then neither read to the end nor closed
    cache.lock_timeout = 0.5
    try:
        th, out = in_thread(lambda: llm.invoke("Hi", max_tokens=2))
        th.join(BOUND)
        assert not th.is_alive(), "a call waited forever behind a suspended stream"
        err = out.get("error")
        assert isinstance(err, ModelBusyError), out
        assert "neither read to the end nor closed" in str(err)
        assert str(llm.resolved_model_path().resolve()) in str(err)
    finally:
        stream.close()
        cache.lock_timeout = 600.0
    assert isinstance(llm.invoke("Hi", max_tokens=2), str)  # the close gave the model back


@pytest.mark.slow
def test_a_dropped_stream_gives_the_model_back(cache: ModelCache) -> None:
    llm = _endless()
    stream = _started_stream(llm)
    del stream
    gc.collect()
    th, out = in_thread(lambda: llm.invoke("Hi", max_tokens=2))
    th.join(BOUND)
    assert not th.is_alive() and isinstance(out.get("value"), str), out


@pytest.mark.slow
def test_a_stream_closed_in_another_thread_ends_its_lease(cache: ModelCache) -> None:
    llm = _endless()
    stream = _started_stream(llm)  # the lease is entered in this thread...
    closer = threading.Thread(target=stream.close)
    closer.start()  # ...and ended in another one
    closer.join(BOUND)
    assert not closer.is_alive()
    assert cache.loaded()[0].active == 0
    assert llm.release() is True  # not refused as "from inside a generation"


# -- 5. one plugin raising cannot break discovery -------------------------------------------
PLUGIN = """
from langchain_setraf.backends import BackendBase

class RaisingBackend(BackendBase):
    name = "raising"
    def load(self, spec):
        raise RuntimeError("never reached")
    def estimate_bytes(self, spec):
        return 0
    def missing_requirements(self):
        raise RuntimeError("cannot probe the accelerator driver")
    def accepts(self, path):
        raise RuntimeError("accepts is broken too")
"""

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "setraf-raising"
version = "0.0.1"

[project.entry-points."langchain_setraf.backends"]
raising = "setraf_raising:RaisingBackend"

[tool.setuptools]
packages = ["setraf_raising"]
"""

DISCOVER = """
import json, sys, warnings
out = {}
try:
    from langchain_setraf import get_backend, init_llm, list_backends
    out["backends"] = {b.name: [b.importable, b.error] for b in list_backends()}
    out["gguf"] = get_backend("gguf").name
    try:
        get_backend("raising")
    except ImportError as exc:
        out["raising"] = str(exc)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out["auto"] = type(init_llm("auto:" + sys.argv[1])).__name__
    out["warnings"] = [str(w.message) for w in seen]
except BaseException as exc:
    out["crash"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_plugin_whose_requirements_check_raises_breaks_nothing_else(
    tmp_path: Path, smollm2_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "setraf_raising").mkdir(parents=True)
    (src / "setraf_raising" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(src)], check=True, capture_output=True)
    path = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    env.pop("SETRAF_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-c", DISCOVER, str(smollm2_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "crash" not in data, data
    importable, error = data["backends"]["raising"]
    assert importable is False
    assert "missing_requirements() raised RuntimeError" in error
    assert "cannot probe the accelerator driver" in error
    assert data["backends"]["gguf"] == [True, None] and data["gguf"] == "gguf"
    assert "setraf-raising" in data["raising"] and "accelerator driver" in data["raising"]
    assert data["auto"] == "GGUFLLM"


def test_a_plugin_whose_accepts_raises_does_not_break_auto(
    smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_setraf import factory
    from langchain_setraf.factory import get_backend, list_backends
    from langchain_setraf.plugins import BackendInfo

    class Broken:
        name = "broken-accepts"

        def accepts(self, path: str) -> bool:
            raise RuntimeError("boom")

    def listing() -> list[BackendInfo]:
        fake = BackendInfo("broken-accepts", "x:Broken", "setraf-x", "1", False, True)
        return [fake, *list_backends()]

    def getting(name: str) -> Any:
        return Broken() if name == "broken-accepts" else get_backend(name)

    monkeypatch.setattr("langchain_setraf.factory.list_backends", listing)
    monkeypatch.setattr("langchain_setraf.factory.get_backend", getting)
    with pytest.warns(RuntimeWarning, match=r"broken-accepts.*accepts\(.*RuntimeError: boom"):
        backend, _ = factory.resolve_uri(f"auto:{smollm2_path}")
    assert backend.name == "gguf"


# -- 6. auto: on a FIFO or a device returns at once with a clear error ----------------------
def _unblock_fifo(path: Path) -> None:
    """Let a reader stuck in ``open()`` of the FIFO return (it then reads end of file)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # no reader is waiting
    os.close(fd)


@pytest.mark.parametrize("kind", ["fifo", "char-device"])
def test_auto_refuses_a_fifo_or_a_device_without_opening_it(tmp_path: Path, kind: str) -> None:
    from langchain_setraf import init_llm
    from langchain_setraf.plugins import UnknownBackendError

    if kind == "fifo":
        path = tmp_path / "model.gguf"
        os.mkfifo(path)
        expected = "FIFO"
    else:
        path = Path("/dev/zero")
        expected = "character device"
    th, out = in_thread(lambda: init_llm(f"auto:{path}"))
    try:
        th.join(BOUND)
        assert not th.is_alive(), f"auto: blocked on {kind} {path}"
    finally:
        if kind == "fifo":
            _unblock_fifo(path)
            th.join(BOUND)
    err = out.get("error")
    assert isinstance(err, UnknownBackendError), out
    assert str(path) in str(err) and expected in str(err)


def test_gguf_accepts_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    from langchain_setraf.backends.gguf.backend import GGUFBackend

    path = tmp_path / "pipe.gguf"
    os.mkfifo(path)
    th, out = in_thread(lambda: GGUFBackend().accepts(path))
    try:
        th.join(BOUND)
        assert not th.is_alive(), "GGUFBackend.accepts blocked opening a FIFO"
    finally:
        _unblock_fifo(path)
        th.join(BOUND)
    assert out == {"value": False}
