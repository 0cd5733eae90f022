"""A model larger than its container's memory limit: who keeps generating, who is killed.

Each run is a child process started inside a fresh memory cgroup (it joins before exec,
so Python's own memory counts too), after the page cache is emptied. The runs:

* ``gguf-mmap`` unlimited: GGUFLLM, mmap, no repacking (its defaults); the reference.
* ``gguf-mmap`` limited, budget off (``SETRAF_CGROUP_BUDGET=0``): the weights are
  file-backed pages the kernel may evict and read back, so it keeps generating, slower.
* ``gguf-mmap`` limited, budget on: refused by the cgroup-aware budget before loading.
* ``lc-llamacpp`` limited: LangChain's LlamaCpp (llama.cpp's default repacking: an
  anonymous copy of the weights, which cannot be evicted without swap): OOM-killed, or
  stalled — its anonymous memory pins the group at the limit while the kernel keeps
  reclaiming and re-reading the last file pages, so no OOM kill comes (cgroup v1 has no
  pressure-based OOM); a run with no result after ``--timeout`` s is recorded as
  ``stalled`` with the anonymous/file RSS at that moment, and killed.
* ``gguf-nommap`` limited, budget on: refused; and budget off: the weights are read into
  anonymous memory — OOM-killed.

Every child runs in its own group; each outcome records the group's peak usage
(``memory.max_usage_in_bytes``), limit hits (``memory.failcnt``), OOM kills
(``memory.oom_control``), major faults, and, for generations, tokens/s and the bytes read
back from disk while generating. Usage (root, not run in CI)::

    python -m benchmarks.pressure run [--model synthetic-1b-Q4_K_M.gguf]
        [--limit 512MiB,384MiB] [--tokens 16] [--timeout 120]
    python -m benchmarks.pressure measure IMPL MODEL TOKENS   # one child
    python -m benchmarks.pressure table [RESULTS.json]        # markdown table

Results: ``benchmarks/results/pressure.json``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.crash import child_outcome
from benchmarks.memtools import drop_page_cache, machine_info, mem_cgroup

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
N_CTX = 512
PROMPT = "The list of numbers: 1, 2, 3,"


def _read_bytes() -> int:
    """Bytes this process caused to be read from storage (``/proc/self/io``)."""
    with open("/proc/self/io", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def _rss_of(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def measure(impl: str, model: Path, tokens: int) -> dict[str, Any]:
    """One child: load, then generate ``tokens`` tokens, timing each."""
    from langchain_setraf.cache import InsufficientMemoryError

    t0 = time.perf_counter()
    try:
        if impl == "lc-llamacpp":
            from langchain_community.llms import LlamaCpp

            llm: Any = LlamaCpp(
                model_path=str(model), n_ctx=N_CTX, max_tokens=tokens, temperature=0, verbose=False
            )
        else:
            from langchain_setraf import GGUFLLM

            llm = GGUFLLM(
                model_path=str(model),
                n_ctx=N_CTX,
                max_tokens=tokens,
                temperature=0,
                use_mmap=impl == "gguf-mmap",
            )
            llm.load()
    except InsufficientMemoryError as exc:
        return {
            "outcome": "refused",
            "error": str(exc),
            "need": exc.need,
            "available": exc.available,
        }
    load_s = time.perf_counter() - t0
    print(json.dumps({"progress": "loaded", "load_s": load_s}), flush=True)
    f0, r0 = resource.getrusage(resource.RUSAGE_SELF).ru_majflt, _read_bytes()
    t0 = time.perf_counter()
    stamps = []
    for _ in llm.stream(PROMPT):
        stamps.append(time.perf_counter() - t0)
    total = time.perf_counter() - t0
    from langchain_setraf import memory_snapshot

    snap = memory_snapshot()
    return {
        "outcome": "generated",
        "load_s": load_s,
        "tokens": len(stamps),
        "ttft_s": stamps[0] if stamps else None,
        "tokens_per_s_after_first": (len(stamps) - 1) / (total - stamps[0])
        if len(stamps) > 1
        else None,
        "gen_major_faults": resource.getrusage(resource.RUSAGE_SELF).ru_majflt - f0,
        "gen_read_bytes": _read_bytes() - r0,
        "rss": snap.rss,
        "anon": snap.anon,
        "file": snap.file,
    }


def _run_one(
    impl: str, model: Path, limit: int | None, *, budget: bool, tokens: int, timeout: int
) -> dict[str, Any]:
    env = {**os.environ, "SETRAF_CGROUP_BUDGET": "1" if budget else "0"}
    env.pop("SETRAF_MAX_MEMORY", None)
    drop_page_cache()
    with mem_cgroup(limit) as group:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.pressure", "measure", impl, str(model), str(tokens)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
            preexec_fn=group.join_fn(),
        )
        at_kill: dict[str, int] = {}
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            at_kill = _rss_of(proc.pid)
            proc.kill()
            out, err = proc.communicate()
            timed_out = True
        wall = time.perf_counter() - t0
        counters = group.counters()
    row: dict[str, Any] = {
        "impl": impl,
        "limit_bytes": limit,
        "budget": budget,
        "returncode": proc.returncode,
        "wall_s": wall,
        "cgroup": counters,
    }
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    final = [x for x in lines if "outcome" in x]
    if final:
        row.update(final[-1])
    elif timed_out:
        row["outcome"] = "stalled"
        row["stalled_note"] = (
            f"no result after {timeout} s, no OOM kill: thrashing at the limit; killed by the "
            "benchmark"
        )
        row["reached"] = "loaded" if lines else "loading"
        row["at_kill"] = at_kill
    elif (outcome := child_outcome(proc.returncode, err)) is not None:
        row["outcome"] = outcome  # a peer's crash on this CPU is its result
        row["reached"] = "loaded" if lines else "loading"
    elif proc.returncode == -signal.SIGKILL:
        row["outcome"] = "oom-killed" if (counters.get("oom_kill") or 0) > 0 else "killed"
        row["reached"] = "loaded" if lines else "loading"
    else:
        row["outcome"] = f"exit {proc.returncode}"
        row["stderr_tail"] = err[-1500:]
    return row


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(model: Path, limit: int, tokens: int, timeout: int) -> dict[str, Any]:
    """The five runs of the module docstring, each from an empty page cache."""
    result: dict[str, Any] = {
        "machine": machine_info(),
        "model": str(model),
        "model_bytes": model.stat().st_size,
        "limit_bytes": limit,
        "limit_over_file": limit / model.stat().st_size,
        "n_ctx": N_CTX,
        "tokens": tokens,
        "runs": {},
    }
    plan = [
        ("gguf-mmap/unlimited", "gguf-mmap", None, False),
        ("gguf-mmap/limited/budget-off", "gguf-mmap", limit, False),
        ("gguf-mmap/limited/budget-on", "gguf-mmap", limit, True),
        ("lc-llamacpp/limited", "lc-llamacpp", limit, False),
        ("gguf-nommap/limited/budget-on", "gguf-nommap", limit, True),
        ("gguf-nommap/limited/budget-off", "gguf-nommap", limit, False),
    ]
    for name, impl, lim, budget in plan:
        _log(name)
        row = _run_one(impl, model, lim, budget=budget, tokens=tokens, timeout=timeout)
        _log(f"  -> {row['outcome']} {row.get('tokens_per_s_after_first')}")
        result["runs"][name] = row
    ref = result["runs"]["gguf-mmap/unlimited"].get("tokens_per_s_after_first")
    lim_tps = result["runs"]["gguf-mmap/limited/budget-off"].get("tokens_per_s_after_first")
    result["limited_vs_unlimited_tokens_per_s"] = lim_tps / ref if ref and lim_tps else None
    return result


def table(results: list[dict[str, Any]]) -> str:
    """The results as a markdown table, for docs/benchmarks.md."""
    mib = 1 << 20
    lines = [
        "| limit (MiB) | limit / file | run | outcome | tokens/s | read from disk while "
        "generating (MiB/token) | peak usage (MiB) | failcnt | OOM kills |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for name, r in res["runs"].items():
            cg = r["cgroup"]
            tps = r.get("tokens_per_s_after_first")
            per_tok = f"{r['gen_read_bytes'] / mib / r['tokens']:.0f}" if r.get("tokens") else "—"
            limit = "none" if r["limit_bytes"] is None else f"{r['limit_bytes'] / mib:.0f}"
            ratio = "" if r["limit_bytes"] is None else f"{res['limit_over_file']:.2f}"
            lines.append(
                f"| {limit} | {ratio} | {name} | {r['outcome']} | "
                f"{'—' if tps is None else f'{tps:.2f}'} | {per_tok} | "
                f"{cg['max_usage_in_bytes'] / mib:.0f} | {cg['failcnt']} | {cg['oom_kill']} |"
            )
    return "\n".join(lines)


def main() -> None:
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "measure" and len(args) == 3:
        print(json.dumps(measure(args[0], Path(args[1]), int(args[2]))), flush=True)
    elif cmd == "run":
        from langchain_setraf.memory import parse_memory

        def opt(name: str, default: str) -> str:
            return args[args.index(name) + 1] if name in args else default

        model = Path(opt("--model", "/work/scale_models/synthetic-1b-Q4_K_M.gguf"))
        limits = [parse_memory(x) for x in opt("--limit", "512MiB").split(",")]
        tokens, timeout = int(opt("--tokens", "16")), int(opt("--timeout", "120"))
        results = [run(model, lim, tokens, timeout) for lim in limits if lim is not None]
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = Path(opt("--out", str(RESULTS / "pressure.json")))
        out.write_text(json.dumps(results, indent=1))
        print(json.dumps(results, indent=1))
    elif cmd == "table":
        path = Path(args[0]) if args else RESULTS / "pressure.json"
        print(table(json.loads(path.read_text())))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
