"""Server memory under many distinct long prompts, against the budget's estimate (issue 21,
attack 10).

``GGUFLLM(server=True, n_ctx=4096)`` on the default SmolLM2-135M receives N distinct
prompts of about 1,500 tokens each (no shared prefix: each starts with its own number and
draws its words from its own seed), one at a time, greedy, one token each. The managed
server's RSS is read after 0, ``every``, 2 × ``every``, ... N prompts and compared with
what the memory budget counts for it
(:meth:`~langchain_setraf.backends.llama_server.LlamaServerBackend.server_bytes`: weights +
KV cache + compute buffers + the prompt cache at its cap + the server's and supervisor's
processes, as ``GGUFLLM.estimate_memory()`` says before the server starts). Target: the
peak RSS of the server and its supervisor ≤ 1.1 × estimate at every point. Before the
cap, llama.cpp's prompt cache (8 GiB by default) grew the same server from 337 to 1,521
MiB after 30 prompts; ``--uncapped`` runs it with that default for comparison.

Usage (writes ``benchmarks/results/server_prompt_cache[_uncapped][_smoke].json``)::

    python -m benchmarks.prompt_cache_bench --prompts 200 --every 10
    python -m benchmarks.prompt_cache_bench --prompts 40 --every 10 --uncapped

``benchmarks/test_prompt_cache_benchmark.py`` runs a short version under pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as benchmarks.server_bench

import psutil

from benchmarks.machine import machine_info
from benchmarks.server_bench import bench_threads, quick, runtime_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
N_CTX = 4096
PROMPT_TOKENS = 1500
#: The issue's bound: server (and supervisor) RSS ≤ this × the budget's estimate.
TARGET_RATIO = 1.1
#: llama.cpp's own ``--cache-ram`` default (MiB), for the ``--uncapped`` comparison.
LLAMA_CPP_DEFAULT_CACHE_RAM = 8192
_WORDS = (
    "resistivity electrode survey profile clay sand gravel bedrock aquifer saturated "
    "dipole Wenner Schlumberger inversion apparent ohm metre depth layer contrast water "
    "table fracture weathered granite limestone karst cavity landfill leachate saline "
    "intrusion borehole calibration misfit iteration regularisation sensitivity model "
    "mesh cell anomaly conductive resistive moisture porosity permeability sediment "
    "alluvium fault zone groundwater pollution mapping acquisition array spacing"
).split()


def prompts(n: int, count_tokens: Any, target: int = PROMPT_TOKENS) -> list[str]:
    """``n`` distinct prompts of about ``target`` tokens (by the model's vocabulary)."""
    out = []
    for i in range(n):
        rng = random.Random(i)
        words = [f"Survey report {i}:"]
        text = ""
        while True:
            words.extend(rng.choice(_WORDS) for _ in range(100))
            text = " ".join(words)
            if count_tokens(text) >= target:
                break
        out.append(text)
    return out


def _rss(pid: int) -> tuple[int, int]:
    """(RSS, peak RSS) of ``pid`` in bytes."""
    proc = psutil.Process(pid)
    rss = int(proc.memory_info().rss)
    peak = rss
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return rss, peak


def _server_rss(pid: int) -> dict[str, int]:
    """RSS and peak RSS of the server ``pid``, and with its supervisor (its parent)."""
    rss, peak = _rss(pid)
    parent = psutil.Process(pid).parent()
    sup_rss, sup_peak = _rss(parent.pid) if parent is not None else (0, 0)
    return {
        "server_rss": rss,
        "server_peak_rss": peak,
        "rss": rss + sup_rss,
        "peak_rss": peak + sup_peak,
    }


def run(
    n: int,
    every: int,
    *,
    uncapped: bool = False,
    on_point: Any = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Send ``n`` prompts, read the server's RSS every ``every`` prompts; the results
    (``on_point(points)`` is called after each reading, e.g. to save progress). With
    ``max_seconds``, the run ends at the first reading after that many seconds of prompts
    (``prompts_sent`` says how many went)."""
    from langchain_setraf import GGUFLLM
    from langchain_setraf.backends.llama_server.managed import running_servers

    options: dict[str, Any] = {"server": True, "n_ctx": N_CTX, "n_threads": bench_threads()}
    if uncapped:
        options["cache_ram_mib"] = LLAMA_CPP_DEFAULT_CACHE_RAM
    with runtime_dir() as rt:
        llm = GGUFLLM(**options, max_tokens=1, temperature=0.0)
        estimate = llm.estimate_memory()  # what the budget checks (no server runs yet)
        texts = prompts(n, llm.get_num_tokens)
        tokens = [llm.get_num_tokens(t) for t in texts]
        try:
            llm.invoke("Hello")  # starts the server: the figure after 0 prompts
            [status] = [s for s in running_servers(rt) if s.running]
            assert status.info is not None
            info = status.info
            argv_cache = _flag(psutil.Process(info.pid), "--cache-ram")
            pid = info.pid
            points: list[dict[str, Any]] = []
            t0 = time.perf_counter()
            for i in range(n + 1):
                if i % every == 0 or i == n:
                    mem = _server_rss(pid)
                    rss, peak = mem["rss"], mem["peak_rss"]
                    points.append(
                        {
                            "prompts": i,
                            **mem,
                            "ratio": rss / estimate,
                            "elapsed_s": time.perf_counter() - t0,
                        }
                    )
                    print(
                        f"{i:4d} prompts: server + supervisor RSS {rss / 2**20:7.1f} MiB "
                        f"(peak {peak / 2**20:7.1f}) = {rss / estimate:.2f} x estimate",
                        file=sys.stderr,
                        flush=True,
                    )
                    if on_point is not None:
                        on_point(points)
                    if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                        break
                if i < n:
                    llm.invoke(texts[i])
        finally:
            llm.release()
    worst = max(p["peak_rss"] for p in points)
    return {
        "model": info.model_path,
        "n_ctx": N_CTX,
        "n_parallel": info.n_parallel,
        "cache_ram_mib": int(argv_cache) if argv_cache else None,
        "prompts": n,
        "prompts_sent": points[-1]["prompts"],
        "prompt_tokens": {"min": min(tokens, default=0), "max": max(tokens, default=0)},
        "estimate": estimate,
        "points": points,
        "peak_rss": worst,
        "targets": {
            "rss_le_1.1x_estimate": {
                "bound": TARGET_RATIO,
                "value": worst / estimate,
                "met": worst <= TARGET_RATIO * estimate,
            }
        },
    }


def _flag(proc: psutil.Process, name: str) -> str | None:
    argv = proc.cmdline()
    return argv[argv.index(name) + 1] if name in argv else None


def run_and_save(
    n: int, every: int, *, uncapped: bool = False, max_seconds: float | None = None
) -> dict[str, Any]:
    """:func:`run`, with the machine, saved under ``benchmarks/results``."""
    machine = {**machine_info(), "loadavg_at_start": os.getloadavg()}
    suffix = ("_uncapped" if uncapped else "") + ("_smoke" if quick() else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"server_prompt_cache{suffix}.json"
    partial = out.with_suffix(".partial.json")

    def progress(points: list[dict[str, Any]]) -> None:
        partial.write_text(json.dumps({"prompts": n, "points": points, "machine": machine}))

    data = run(n, every, uncapped=uncapped, on_point=progress, max_seconds=max_seconds)
    data["machine"] = {**machine, "loadavg_at_end": os.getloadavg()}
    out.write_text(json.dumps(data, indent=1))
    partial.unlink(missing_ok=True)
    return data


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print and save the JSON."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.prompt_cache_bench")
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--every", type=int, default=10)
    p.add_argument(
        "--uncapped",
        action="store_true",
        help=f"llama.cpp's own prompt cache cap ({LLAMA_CPP_DEFAULT_CACHE_RAM} MiB)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="end at the first reading after this many minutes (a slow machine)",
    )
    ns = p.parse_args(argv)
    if ns.prompts < 1 or ns.every < 1:
        p.error("--prompts and --every must be >= 1")
    limit = None if ns.max_minutes is None else ns.max_minutes * 60.0
    data = run_and_save(ns.prompts, ns.every, uncapped=ns.uncapped, max_seconds=limit)
    print(json.dumps({k: v for k, v in data.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
