"""Cold and warm starts: load time and time to first token from an empty page cache.

Each measurement runs in its own child process. ``cold`` empties the page cache first
(``echo 1 > /proc/sys/vm/drop_caches``: the model file, Python, torch and llama.cpp's
libraries all come from disk, as in a container that just started); ``warm`` reads the
model file(s) into the page cache first (a restart on the same machine).

The child reports, from its own clock: imports, model load, the first generation's time
to first token and tokens/s, the same for a second generation (a different prompt, so no
prompt cache helps), and the major page faults (reads from disk) of each phase. The
parent adds the wall time from spawning the process to its first token.

Usage (root, not run in CI)::

    python -m benchmarks.cold_start run [--sizes 135m,1b] [--model-dir /work/scale_models]
        [--impls gguf-mmap,gguf-nommap,lc-llamacpp,hf-bf16] [--repeats 2]
    python -m benchmarks.cold_start measure IMPL MODEL_PATH   # one child (JSON on stdout)
    python -m benchmarks.cold_start table [RESULTS.json]       # markdown table of medians

The 1B files come from ``python -m benchmarks.synthetic_gguf build 1b DIR`` (GGUF
Q4_K_M) and ``python -m benchmarks.synthetic_gguf hf-build 1b DIR/hf-1b-bf16``; the 135M
safetensors checkpoint is the test suite's (``tests/helpers/checkpoint.py``).
Results: ``benchmarks/results/cold_start.json``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.crash import child_outcome
from benchmarks.memtools import drop_page_cache, machine_info, warm_file

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMPLS = ("gguf-mmap", "gguf-nommap", "lc-llamacpp", "hf-bf16")
PROMPTS = (
    "The list of numbers: 1, 2, 3,",
    "Apparent resistivity is measured",
)
N_CTX = 2048


def _majflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


def _counters() -> dict[str, float]:
    """CPU seconds (all threads) and bytes read from storage by this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    read = 0
    with open("/proc/self/io", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("read_bytes:"):
                read = int(line.split()[1])
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "read_bytes": read}


def _since(c0: dict[str, float]) -> dict[str, float]:
    c1 = _counters()
    return {k: c1[k] - c0[k] for k in c1}


def _generation(llm: Any, prompt: str) -> dict[str, Any]:
    """Stream one generation: time to first chunk, chunks per second after it."""
    f0, c0, t0 = _majflt(), _counters(), time.perf_counter()
    first: float | None = None
    first_counts: dict[str, float] = {}
    first_wall: float | None = None
    chunks = 0
    for _ in llm.stream(prompt):
        if first is None:
            first, first_wall = time.perf_counter() - t0, time.time()
            first_counts = _since(c0)
        chunks += 1
    total = time.perf_counter() - t0
    rest = total - (first or 0.0)
    return {
        "ttft_s": first,
        "first_token_wall": first_wall,
        "total_s": total,
        "tokens": chunks,
        "tokens_per_s_after_first": (chunks - 1) / rest if chunks > 1 and rest > 0 else None,
        "major_faults": _majflt() - f0,
        "ttft_cpu_s": first_counts.get("cpu_s"),
        "ttft_read_bytes": first_counts.get("read_bytes"),
    }


def measure(impl: str, model: Path, tokens: int) -> dict[str, Any]:
    """One child: import, load, two generations. ``impl`` is one of :data:`IMPLS`."""
    f0, c0, t0 = _majflt(), _counters(), time.perf_counter()
    if impl.startswith("gguf"):
        import llama_cpp

        from langchain_setraf import GGUFLLM

        import_s, import_faults, import_c = time.perf_counter() - t0, _majflt() - f0, _since(c0)
        f0, c0, t0 = _majflt(), _counters(), time.perf_counter()
        llm: Any = GGUFLLM(
            model_path=str(model),
            n_ctx=N_CTX,
            max_tokens=tokens,
            temperature=0,
            use_mmap=impl == "gguf-mmap",
        )
        llm.load()
    elif impl == "lc-llamacpp":
        import llama_cpp  # noqa: F401
        from langchain_community.llms import LlamaCpp

        import_s, import_faults, import_c = time.perf_counter() - t0, _majflt() - f0, _since(c0)
        f0, c0, t0 = _majflt(), _counters(), time.perf_counter()
        llm = LlamaCpp(
            model_path=str(model), n_ctx=N_CTX, max_tokens=tokens, temperature=0, verbose=False
        )
    elif impl == "hf-bf16":
        import torch  # noqa: F401
        import transformers  # noqa: F401

        from langchain_setraf import TransformersLLM

        import_s, import_faults, import_c = time.perf_counter() - t0, _majflt() - f0, _since(c0)
        f0, c0, t0 = _majflt(), _counters(), time.perf_counter()
        llm = TransformersLLM(
            model=str(model),
            quantization="bf16",
            temperature=0,
            max_tokens=tokens,
            repetition_penalty=1.0,
        )
        llm.load()
    else:
        raise SystemExit(f"unknown implementation {impl!r}; one of {', '.join(IMPLS)}")
    load_s, load_faults, load_c = time.perf_counter() - t0, _majflt() - f0, _since(c0)
    gen1 = _generation(llm, PROMPTS[0])
    gen2 = _generation(llm, PROMPTS[1])
    from langchain_setraf import memory_snapshot

    snap = memory_snapshot()
    return {
        "impl": impl,
        "model": str(model),
        "import_s": import_s,
        "import_major_faults": import_faults,
        "load_s": load_s,
        "load_major_faults": load_faults,
        "import_cpu_s": import_c["cpu_s"],
        "import_read_bytes": import_c["read_bytes"],
        "load_cpu_s": load_c["cpu_s"],
        "load_read_bytes": load_c["read_bytes"],
        "gen1": gen1,
        "gen2": gen2,
        "rss": snap.rss,
        "anon": snap.anon,
        "file": snap.file,
    }


def _child(impl: str, model: Path, tokens: int) -> dict[str, Any]:
    loadavg = os.getloadavg()[0]
    spawn = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cold_start", "measure", impl, str(model), str(tokens)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    outcome = child_outcome(out.returncode, out.stderr)
    if outcome is not None:  # a peer's crash (or our refusal) is the result on this CPU
        return {"impl": impl, "model": str(model), "outcome": outcome}
    if out.returncode != 0:
        raise RuntimeError(f"{impl} {model}: exit {out.returncode}\n{out.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    row["spawn_to_first_token_s"] = row["gen1"]["first_token_wall"] - spawn
    row["process_s"] = time.time() - spawn
    row["loadavg_1min_before"] = loadavg
    return row


def _models(size: str, model_dir: Path) -> dict[str, Path]:
    """GGUF file and safetensors checkpoint of one size."""
    if size == "135m":
        from langchain_setraf.models import default_gguf_path

        sys.path.insert(0, str(ROOT / "tests"))
        from helpers.checkpoint import build_checkpoint  # type: ignore[import-not-found]

        gguf = default_gguf_path()
        return {"gguf": gguf, "hf": build_checkpoint(gguf)}
    gguf = model_dir / f"synthetic-{size}-Q4_K_M.gguf"
    hf = model_dir / f"hf-{size}-bf16"
    if not gguf.is_file():
        raise SystemExit(f"{gguf} missing: python -m benchmarks.synthetic_gguf build {size} DIR")
    return {"gguf": gguf, "hf": hf}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(get: Any) -> float | None:
        vals = [v for r in rows if (v := get(r)) is not None]
        return statistics.median(vals) if vals else None

    return {
        "n": len(rows),
        "import_s": med(lambda r: r["import_s"]),
        "load_s": med(lambda r: r["load_s"]),
        "ttft1_s": med(lambda r: r["gen1"]["ttft_s"]),
        "ttft2_s": med(lambda r: r["gen2"]["ttft_s"]),
        "tps1": med(lambda r: r["gen1"]["tokens_per_s_after_first"]),
        "tps2": med(lambda r: r["gen2"]["tokens_per_s_after_first"]),
        "load_plus_ttft1_s": med(lambda r: r["load_s"] + r["gen1"]["ttft_s"]),
        "spawn_to_first_token_s": med(lambda r: r["spawn_to_first_token_s"]),
        "load_cpu_s": med(lambda r: r.get("load_cpu_s")),
        "ttft1_cpu_s": med(lambda r: r["gen1"].get("ttft_cpu_s")),
        "read_mb_load_ttft1": med(
            lambda r: (r.get("load_read_bytes", 0) + (r["gen1"].get("ttft_read_bytes") or 0)) / 1e6
        ),
        "read_mb_imports": med(lambda r: r.get("import_read_bytes", 0) / 1e6),
        "major_faults_load_gen1": med(lambda r: r["load_major_faults"] + r["gen1"]["major_faults"]),
    }


def run(
    sizes: list[str], model_dir: Path, impls: list[str], repeats: int, tokens: int
) -> dict[str, Any]:
    """Every size × implementation × (cold, warm), ``repeats`` times, each in a child."""
    result: dict[str, Any] = {
        "machine": machine_info(),
        "n_ctx": N_CTX,
        "tokens": tokens,
        "repeats": repeats,
        "rows": [],
        "summary": {},
    }
    for size in sizes:
        paths = _models(size, model_dir)
        drop_page_cache()
        t0 = time.perf_counter()
        warm_file(paths["gguf"])
        result.setdefault("cold_read_mb_per_s", {})[size] = (
            paths["gguf"].stat().st_size / 1e6 / (time.perf_counter() - t0)
        )
        for impl in impls:
            model = paths["hf"] if impl == "hf-bf16" else paths["gguf"]
            if not model.exists():
                _log(f"skip {size} {impl}: {model} missing")
                continue
            for state in ("cold", "warm"):
                got = []
                for i in range(repeats):
                    if state == "cold":
                        drop_page_cache()
                    else:
                        warm_file(model)
                    _log(f"{size} {impl} {state} #{i + 1}")
                    row = _child(impl, model, tokens)
                    row.update(size=size, state=state, repeat=i)
                    got.append(row)
                    result["rows"].append(row)
                    if "outcome" in row:
                        break
                key = f"{size}/{impl}/{state}"
                crashed = [r["outcome"] for r in got if "outcome" in r]
                result["summary"][key] = (
                    {"n": len(got), "outcome": crashed[0]} if crashed else _summary(got)
                )
    return result


def table(result: dict[str, Any]) -> str:
    """The results as a markdown table (medians over the repeats), for docs/benchmarks.md."""

    def f(v: float | None, nd: int = 2) -> str:
        return "—" if v is None else f"{v:.{nd}f}"

    lines = [
        "| size | implementation | start | read from disk (MB) | load (s) | 1st gen TTFT (s) | "
        "1st gen TTFT, CPU (s) | 2nd gen TTFT (s) | tok/s (1st / 2nd gen) | load + TTFT (s) | "
        "spawn → 1st token (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in result["summary"].items():
        size, impl, state = key.split("/")
        if "outcome" in m:
            lines.append(f"| {size} | {impl} | {state} | {m['outcome']} |" + " |" * 7)
            continue
        lines.append(
            f"| {size} | {impl} | {state} | {f(m.get('read_mb_load_ttft1'), 0)} | "
            f"{f(m['load_s'])} | {f(m['ttft1_s'])} | {f(m.get('ttft1_cpu_s'))} | "
            f"{f(m['ttft2_s'])} | {f(m['tps1'], 1)} / {f(m['tps2'], 1)} | "
            f"{f(m['load_plus_ttft1_s'])} | {f(m['spawn_to_first_token_s'], 1)} |"
        )
    return "\n".join(lines)


def _arg(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default


def main() -> None:
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "measure" and len(args) >= 2:
        tokens = int(args[2]) if len(args) > 2 else 16
        print(json.dumps(measure(args[0], Path(args[1]), tokens)))
    elif cmd == "run":
        if os.geteuid() != 0:
            raise SystemExit("cold starts need root (to empty the page cache)")
        result = run(
            _arg(args, "--sizes", "135m,1b").split(","),
            Path(_arg(args, "--model-dir", "/work/scale_models")),
            _arg(args, "--impls", ",".join(IMPLS)).split(","),
            int(_arg(args, "--repeats", "2")),
            int(_arg(args, "--tokens", "16")),
        )
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = Path(_arg(args, "--out", str(RESULTS / "cold_start.json")))
        out.write_text(json.dumps(result, indent=1))
        print(json.dumps(result["summary"], indent=1))
    elif cmd == "table":
        path = Path(args[0]) if args else RESULTS / "cold_start.json"
        print(table(json.loads(path.read_text())))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
