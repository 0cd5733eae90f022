"""pytest-benchmark suite: memory and speed of langchain-setraf vs the peers, same run.

Each scenario runs in its own subprocess (``benchmarks/run_scenario.py``) so figures do
not leak between cases; memory goes to ``benchmark.extra_info``. Full run::

    .venv/bin/python -m pytest benchmarks --benchmark-json=benchmarks/results/latest.json
    .venv/bin/python -m benchmarks.report

CI runs ``pytest benchmarks --benchmark-disable`` (each scenario once, memory targets
checked, speed ratios recorded but only asserted in a full run).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.crash import child_outcome
from benchmarks.run_scenario import run_workers
from langchain_setraf.models import default_gguf_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Implementations that are not ours: their crash on a CPU is recorded as their result.
PEERS = frozenset({"raw-llama", "lc-llamacpp", "lc-hf-pipeline-fp32", "lc-hf-pipeline-bf16"})
GGUF_IMPLS = ["setraf-gguf", "setraf-gguf-nommap", "raw-llama", "lc-llamacpp"]
HF_IMPLS = [
    "setraf-hf-fp32",
    "setraf-hf-bf16",
    "setraf-hf-nf4",
    "setraf-hf-int8",
    "lc-hf-pipeline-fp32",
    "lc-hf-pipeline-bf16",
]


def _run(impl: str, scenario: str, ckpt: str | None = None) -> dict[str, Any]:
    args = [sys.executable, "-m", "benchmarks.run_scenario", impl, scenario]
    if ckpt:
        args.append(ckpt)
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=900)
    outcome = child_outcome(out.returncode, out.stderr)
    if outcome is not None and impl in PEERS:  # a peer's crash on this CPU is its result
        return {"outcome": outcome}
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _record(benchmark: Any, results: dict[str, Any], key: str, data: dict[str, Any]) -> None:
    results[key] = data
    if "outcome" in data:
        benchmark.extra_info["outcome"] = data["outcome"]
    mem = data.get("mem", {})
    benchmark.extra_info.update(
        {k: mem.get(k) for k in ("rss", "uss", "pss", "anon", "file", "peak_rss")}
    )
    for k in ("load_s", "ttft_s", "tokens_per_s", "tokens", "released_rss", "pss_total"):
        if k in data:
            benchmark.extra_info[k] = data[k]


@pytest.mark.parametrize("impl", GGUF_IMPLS)
def test_a_one_chain_gguf(benchmark: Any, results: dict[str, Any], impl: str) -> None:
    data = benchmark.pedantic(_run, args=(impl, "one"), rounds=1, iterations=1)
    _record(benchmark, results, f"one/{impl}", data)


@pytest.mark.parametrize("impl", HF_IMPLS)
def test_a_one_chain_transformers(
    benchmark: Any, results: dict[str, Any], checkpoint: str, impl: str
) -> None:
    data = benchmark.pedantic(_run, args=(impl, "one", checkpoint), rounds=1, iterations=1)
    _record(benchmark, results, f"one/{impl}", data)


@pytest.mark.parametrize("impl", ["setraf-gguf", "raw-llama", "lc-llamacpp"])
def test_b_four_chains_one_process(benchmark: Any, results: dict[str, Any], impl: str) -> None:
    data = benchmark.pedantic(_run, args=(impl, "four"), rounds=1, iterations=1)
    _record(benchmark, results, f"four/{impl}", data)


@pytest.mark.parametrize(
    "impl", ["setraf-gguf", "raw-llama", "lc-llamacpp", "setraf-hf-bf16", "lc-hf-pipeline-bf16"]
)
def test_c_five_release_cycles(
    benchmark: Any, results: dict[str, Any], checkpoint: str, impl: str
) -> None:
    ckpt = checkpoint if "hf" in impl else None
    data = benchmark.pedantic(_run, args=(impl, "cycles", ckpt), rounds=1, iterations=1)
    _record(benchmark, results, f"cycles/{impl}", data)


@pytest.mark.parametrize("impl", ["setraf-gguf", "lc-llamacpp"])
def test_ab_speed_ratios_in_one_process(benchmark: Any, results: dict[str, Any], impl: str) -> None:
    """Load (one object × four calls vs four objects) and tokens/s vs raw llama-cpp-python,
    both sides alternating in one process (see ``run_scenario._speed``)."""
    data = benchmark.pedantic(_run, args=(impl, "speed"), rounds=1, iterations=1)
    results[f"speed/{impl}"] = data
    if "outcome" in data:
        benchmark.extra_info["outcome"] = data["outcome"]
        return
    for k in ("one_object_four_calls_s", "four_objects_s", "four_vs_one_load"):
        benchmark.extra_info[k] = data[k]
    for k in ("tokens_per_s", "raw_tokens_per_s", "tokens_per_s_vs_raw"):
        benchmark.extra_info[k] = data[k]


@pytest.mark.parametrize("impl", ["setraf-gguf", "lc-llamacpp"])
@pytest.mark.parametrize("n", [1, 4])
def test_d_worker_processes(benchmark: Any, results: dict[str, Any], impl: str, n: int) -> None:
    data = benchmark.pedantic(run_workers, args=(impl, n), rounds=1, iterations=1)
    _record(benchmark, results, f"workers{n}/{impl}", data)


def test_targets_as_ratios_in_this_run(benchmark: Any, results: dict[str, Any]) -> None:
    """The issue's targets, from figures measured above in this same run."""
    need = [
        "one/setraf-gguf",
        "speed/setraf-gguf",
        "four/setraf-gguf",
        "cycles/setraf-gguf",
        "workers1/setraf-gguf",
        "workers4/setraf-gguf",
    ]
    missing = [k for k in need if k not in results]
    if missing:
        pytest.skip(f"run the whole suite: missing {missing}")
    r = results
    model_size = default_gguf_path().stat().st_size
    cyc = r["cycles/setraf-gguf"]["released_rss"]
    ratios = {
        "tokens_per_s_vs_raw": r["speed/setraf-gguf"]["tokens_per_s_vs_raw"],
        "four_vs_one_rss": r["four/setraf-gguf"]["mem"]["rss"] / r["one/setraf-gguf"]["mem"]["rss"],
        "four_vs_one_load": r["speed/setraf-gguf"]["four_vs_one_load"],
        "drift_fraction_of_model": (max(cyc[1:]) - cyc[0]) / model_size,
        "workers4_vs_1_pss": r["workers4/setraf-gguf"]["pss_total"]
        / r["workers1/setraf-gguf"]["pss_total"],
    }
    crashed = {k: v["outcome"] for k, v in r.items() if isinstance(v, dict) and "outcome" in v}
    ok = {k: v for k, v in r.items() if k not in crashed}
    if "four/lc-llamacpp" in ok and "one/lc-llamacpp" in ok:
        ratios["peer_lc_four_vs_one_rss"] = (
            ok["four/lc-llamacpp"]["mem"]["rss"] / ok["one/lc-llamacpp"]["mem"]["rss"]
        )
    if "speed/lc-llamacpp" in ok:
        ratios["peer_lc_four_vs_one_load"] = ok["speed/lc-llamacpp"]["four_vs_one_load"]
        ratios["peer_lc_tokens_per_s_vs_raw"] = ok["speed/lc-llamacpp"]["tokens_per_s_vs_raw"]
    benchmark.extra_info.update(ratios)
    if crashed:
        benchmark.extra_info["peer_outcomes"] = crashed
    RESULTS.mkdir(parents=True, exist_ok=True)
    from benchmarks.machine import machine_info

    summary = {
        "ratios": ratios,
        "peer_outcomes": crashed,
        "results": ok,
        "benchmark_disabled": benchmark.disabled,
        "machine": machine_info(),
    }
    (RESULTS / ("smoke.json" if benchmark.disabled else "summary.json")).write_text(
        json.dumps(summary, indent=1, default=str)
    )
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert r["four/setraf-gguf"]["loads"] == 1, "four chains must share one load"
    assert ratios["four_vs_one_rss"] <= 1.1
    assert ratios["drift_fraction_of_model"] <= 0.02
    # (d) is recorded here, not asserted: at 135M the weights (98 MB, file-backed, shared
    # by every worker) are smaller than each process's own anonymous memory (KV cache for
    # n_ctx=2048, compute buffers, the runtime), so no implementation can reach 1.5x
    # (LlamaCpp measures the same). `python -m benchmarks.synthetic_gguf run 7b` asserts
    # it where it means something (multi-GB weights). See docs/benchmarks.md.
    if not benchmark.disabled:  # speed is measured in a full run, not in the short smoke run
        assert ratios["tokens_per_s_vs_raw"] >= 0.97
        assert ratios["four_vs_one_load"] <= 1.1


def test_perplexity_per_mode(benchmark: Any, checkpoint: str) -> None:
    """Same tokens through every backend/mode; the "95 % quality" claim, measured."""

    def run() -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.perplexity", checkpoint],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    data = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(data["perplexity"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    # the smoke run (CI) must not overwrite the published figures
    name = "perplexity_smoke.json" if benchmark.disabled else "perplexity.json"
    (RESULTS / name).write_text(json.dumps(data, indent=1))
    ppl = data["perplexity"]
    # the fp32/bf16/int8 checkpoint *is* the dequantised Q4_1 model: same perplexity
    assert abs(ppl["gguf-q4_1"] / ppl["transformers-fp32"] - 1) < 0.02
    assert all(math.isfinite(v) and v > 1 for v in ppl.values())
