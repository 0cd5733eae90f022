"""Turn benchmarks/results/*.json into docs/benchmarks.md and PNG plots.

Usage: python -m benchmarks.report [RESULTS_JSON]

Reads ``summary.json`` (the pytest-benchmark run), ``perplexity.json`` and the scale runs
``scale_<size>.json`` (``python -m benchmarks.synthetic_gguf run``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
IMG = DOCS / "img"
MB = 1024 * 1024


def _mb(v: Any) -> str:
    return "—" if v is None else f"{v / MB:.0f}"


def _gb(v: Any) -> str:
    return "—" if v is None else f"{v / 2**30:.2f}"


def load_scale() -> list[dict[str, Any]]:
    """The scale runs, smallest first."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("scale_*.json"))]
    runs = [r for r in runs if "measured" in r]
    return sorted(runs, key=lambda r: int(r["params"]))


def _scale_workers_ratio() -> str:
    runs = [r for r in load_scale() if r["size"] == "7b"]
    if not runs:
        return "(not measured yet)"
    return f"{runs[0]['workers4_vs_1_pss']:.2f}× the PSS of one (target ≤ 1.5×)"


def _row(run: dict[str, Any], quant: str, impl: str, repack: bool) -> dict[str, Any] | None:
    for m in run["measured"]:
        if "outcome" in m:  # crashed on that CPU: no figures
            continue
        if m["quant"] == quant and m["impl"] == impl and bool(m["repack"]) == repack:
            return m  # type: ignore[no-any-return]
    return None


def _scale_plot(r: dict[str, Any], scale: list[dict[str, Any]]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if not scale:
        return None
    params0 = 134_515_008  # SmolLM2-135M (the pytest-benchmark run)
    series: dict[str, list[tuple[float, float]]] = {}

    def add(name: str, params: float, rss: Any) -> None:
        if rss:
            series.setdefault(name, []).append((params / 1e9, rss / 2**30))

    one = {k.split("/", 1)[1]: v for k, v in r.items() if k.startswith("one/")}
    for name, impl in (
        ("langchain-setraf GGUF (mmap, no repack)", "setraf-gguf"),
        ("LlamaCpp (langchain-community)", "lc-llamacpp"),
        ("transformers bf16 (measured)", "setraf-hf-bf16"),
    ):
        if impl in one:
            add(name, params0, one[impl]["mem"]["rss"] - one[impl]["base"]["rss"])
    add("transformers fp32 (estimate)", params0, params0 * 4)
    for run in scale:
        p = float(run["params"])
        ours = _row(run, "Q4_K_M", "setraf-gguf", False)
        peer = _row(run, "Q4_K_M", "lc-llamacpp", True)
        add("langchain-setraf GGUF (mmap, no repack)", p, ours and ours["rss"])
        add("LlamaCpp (langchain-community)", p, peer and peer["rss"])
        hf = run.get("transformers_bf16")
        add("transformers bf16 (measured)", p, hf and hf["rss"])
        add("transformers fp32 (estimate)", p, run["transformers_fp32_bytes_estimate"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in series.items():
        xs, ys = zip(*sorted(pts), strict=True)
        style = "--" if "estimate" in name else "-"
        ax.plot(xs, ys, style, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = sorted({x for pts in series.values() for x, _ in pts})
    ax.set_xticks(sizes, [f"{x * 1000:.0f}M" if x < 1 else f"{x:.1f}B" for x in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("parameters; GGUF: Q4_1 at 135M, Q4_K_M above")
    ax.set_ylabel("RSS added by the model (GiB)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / "bench_memory_vs_size.png", dpi=110)
    plt.close(fig)
    return "bench_memory_vs_size.png"


def render_scale(scale: list[dict[str, Any]]) -> list[str]:
    if not scale:
        return ["", "Not measured yet: the synthetic-model scale runs."]
    lines = [
        "",
        "## Scale: synthetic llama-shaped models up to 7B",
        "",
        "`python -m benchmarks.synthetic_gguf run {1b,7b} DIR`: random weights in llama "
        "shapes (7B = Mistral-7B's 32 layers, d 4096, FFN 14336, 8 KV heads; SmolLM2's "
        "49k vocabulary), quantised by llama.cpp's own quantiser; each figure from its own "
        "process, as the memory the model adds over the post-import level, n_ctx 2048. "
        "Not run in CI.",
        "",
        "| size | quant | file (GiB) | implementation | repack | estimate (GiB) | RSS (GiB) | "
        "anon (GiB) | file-backed (GiB) | load + 1 token (s) | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in scale:
        for m in run["measured"]:
            if "outcome" in m:  # a peer that crashed (or a refused repack) on that CPU
                lines.append(
                    f"| {run['size']} | {m['quant']} | | {m['impl']} | "
                    f"{'on' if m['repack'] else 'off'} | {m['outcome']} |" + " |" * 5
                )
                continue
            lines.append(
                f"| {run['size']} | {m['quant']} | {_gb(m['file_bytes'])} | {m['impl']} | "
                f"{'on' if m['repack'] else 'off'} | {_gb(m['estimate'])} | {_gb(m['rss'])} | "
                f"{_gb(m['anon'])} | {_gb(m['file'])} | {m['load_plus_1_token_s']:.1f} | "
                f"{m['tokens_per_s_8']:.2f} |"
            )
    lines += [
        "",
        "| size | transformers bf16 measured RSS (GiB) | anon (GiB) | load + 1 token (s) | "
        "bf16 by parameters (GiB) | fp32 by parameters (GiB, estimate only) |",
        "|---|---|---|---|---|---|",
    ]
    for run in scale:
        hf = run.get("transformers_bf16") or {}
        lines.append(
            f"| {run['size']} | {_gb(hf.get('rss'))} | {_gb(hf.get('anon'))} | "
            f"{hf.get('load_plus_1_token_s', float('nan')):.1f} | "
            f"{_gb(run['transformers_bf16_bytes_estimate'])} | "
            f"{_gb(run['transformers_fp32_bytes_estimate'])} |"
        )
    lines += [
        "",
        "Worker processes on the same Q4_K_M file (scenario (d) at scale; total PSS of the "
        "workers while all are loaded):",
        "",
        "| size | implementation | workers | total PSS (GiB) | total RSS (GiB) | 4 vs 1 (PSS) |",
        "|---|---|---|---|---|---|",
    ]
    for run in scale:
        w = run.get("workers", {})
        for key, v in w.items():
            impl, n = key.split("/")
            if "outcome" in v:  # a peer that crashed on that CPU
                lines.append(f"| {run['size']} | {impl} | {n} | {v['outcome']} | | |")
                continue
            one = w.get(f"{impl}/1")
            one = None if one is None or "outcome" in one else one
            ratio = f"{v['pss_total'] / one['pss_total']:.2f}" if one and n == "4" else ""
            lines.append(
                f"| {run['size']} | {impl} | {n} | {_gb(v['pss_total'])} | "
                f"{_gb(v['rss_total'])} | {ratio} |"
            )
    lines += ["", "Build cost (2 cores):", ""]
    for run in scale:
        q = run["quantized"]
        parts = ", ".join(f"{k} {v['quantize_s'] / 60:.1f} min" for k, v in q.items())
        hf = f", bf16 safetensors {run['hf_build_s'] / 60:.1f} min" if "hf_build_s" in run else ""
        lines.append(
            f"- {run['size']} ({run['params'] / 1e9:.2f}B parameters): F16 file "
            f"{_gb(run['f16_bytes'])} GiB written in {run['write_f16_s'] / 60:.1f} min; "
            f"quantising {parts}{hf}."
        )
    return lines


def _plots(r: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    made = []
    one = {k.split("/", 1)[1]: v for k, v in r.items() if k.startswith("one/")}
    if one:
        names = list(one)
        anon = [one[n]["mem"]["anon"] / MB for n in names]
        file = [one[n]["mem"]["file"] / MB for n in names]
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.barh(names, anon, label="anonymous")
        ax.barh(names, file, left=anon, label="file-backed")
        ax.set_xlabel("RSS (MB), one chain, after generation")
        ax.legend()
        fig.tight_layout()
        fig.savefig(IMG / "bench_memory_by_backend.png", dpi=110)
        plt.close(fig)
        made.append("bench_memory_by_backend.png")
    impls = [i for i in ("setraf-gguf", "lc-llamacpp", "raw-llama") if f"four/{i}" in r]
    if impls:
        fig, ax = plt.subplots(figsize=(6, 4))
        for i in impls:
            ax.plot(
                [1, 4],
                [r[f"one/{i}"]["mem"]["rss"] / MB, r[f"four/{i}"]["mem"]["rss"] / MB],
                marker="o",
                label=i,
            )
        ax.set_xlabel("chains on the same model in one process")
        ax.set_ylabel("RSS (MB)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(IMG / "bench_memory_vs_chains.png", dpi=110)
        plt.close(fig)
        made.append("bench_memory_vs_chains.png")
    cyc = {k.split("/", 1)[1]: v["released_rss"] for k, v in r.items() if k.startswith("cycles/")}
    if cyc:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, vals in cyc.items():
            ax.plot(
                range(1, len(vals) + 1), [(v - vals[0]) / MB for v in vals], marker="o", label=name
            )
        ax.set_xlabel("load → release cycle")
        ax.set_ylabel("RSS after release − after cycle 1 (MB)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(IMG / "bench_drift.png", dpi=110)
        plt.close(fig)
        made.append("bench_drift.png")
    return made


def render(summary: dict[str, Any]) -> str:
    r = summary["results"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks.report` from `benchmarks/results/summary.json`",
        "(`pytest benchmarks`; each scenario in its own process, all in the same run, on the",
        "project's 2-core CI machine, SmolLM2-135M). Ratios are within this one run.",
        "",
        "## Targets",
        "",
        "| ratio | value | target |",
        "|---|---|---|",
    ]
    targets = {
        "tokens_per_s_vs_raw": "≥ 0.97",
        "four_vs_one_rss": "≤ 1.1",
        "four_vs_one_load": "≤ 1.1",
        "drift_fraction_of_model": "≤ 0.02",
        "workers4_vs_1_pss": "≤ 1.5",
        "peer_lc_four_vs_one_rss": "(peer)",
        "peer_lc_four_vs_one_load": "(peer)",
        "peer_lc_tokens_per_s_vs_raw": "(peer)",
    }
    for k, v in summary["ratios"].items():
        lines.append(f"| {k} | {v:.3f} | {targets.get(k, '')} |")
    crashed = summary.get("peer_outcomes") or {}
    if crashed:
        lines += [
            "",
            'Peers that crashed on this CPU (a result, not a failure: see "Repacking and the '
            'CPU" below):',
            "",
            "| scenario | outcome |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in crashed.items()),
        ]
    lines += [
        "",
        "`workers4_vs_1_pss` misses its target at this size, for every implementation (LlamaCpp "
        "measures the same): the 98 MB of weights are file-backed and shared by the four "
        "workers, but each process keeps ~120 MB of its own anonymous memory (the KV cache for "
        "n_ctx 2048, compute buffers, the Python and llama.cpp runtime), which a 135M model "
        "cannot outweigh. The ratio is meaningful for multi-GB weights: see the 7B scale "
        "run below, where the same four workers take " + _scale_workers_ratio() + ".",
        "",
        "Warm TTFT uses llama.cpp's prompt cache (the prompt repeats), for every GGUF "
        "implementation alike. Load times include the first token; the transformers ones "
        "include `TransformersBackend` imports of the mode. Each row is its own process: "
        "speeds across rows vary with the shared VM (up to ±30 %); the speed ratios in "
        "the targets come from the alternating measurement under (b).",
        "",
        "## (a) One chain",
        "",
        "| implementation | load + 1st token (s) | TTFT warm (s) | tokens/s | RSS | USS | PSS | "
        "anon | file | peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, v in r.items():
        if not k.startswith("one/"):
            continue
        m = v["mem"]
        lines.append(
            f"| {k[4:]} | {v['load_s']:.2f} | {v['ttft_s']:.3f} | {v['tokens_per_s']:.1f} | "
            f"{_mb(m['rss'])} | {_mb(m['uss'])} | {_mb(m['pss'])} | {_mb(m['anon'])} | "
            f"{_mb(m['file'])} | {_mb(m['peak_rss'])} |"
        )
    lines += [
        "",
        "## (b) Four chains on one model, one process",
        "",
        "| implementation | RSS one (MB) | RSS four (MB) | RSS four / one |",
        "|---|---|---|---|",
    ]
    for k, v in r.items():
        if k.startswith("four/") and f"one/{k[5:]}" in r:
            o = r[f"one/{k[5:]}"]
            lines.append(
                f"| {k[5:]} | {_mb(o['mem']['rss'])} | {_mb(v['mem']['rss'])} | "
                f"{v['mem']['rss'] / o['mem']['rss']:.2f} |"
            )
    lines += [
        "",
        "Timing ratios, both sides alternating in one process (best of 3 for load, of 5 "
        "for tokens/s): separate processes on this shared 2-core VM differ by up to ±30 % "
        "from one start to the next. Load compares the same generation work: one object "
        "making four first calls (1 token each) vs four objects making a first call each.",
        "",
        "| implementation | one object, four calls (s) | four objects (s) | ratio | "
        "tokens/s | raw llama-cpp-python tokens/s | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in r.items():
        if k.startswith("speed/"):
            lines.append(
                f"| {k[6:]} | {v['one_object_four_calls_s']:.2f} | {v['four_objects_s']:.2f} | "
                f"{v['four_vs_one_load']:.2f} | {v['tokens_per_s']:.1f} | "
                f"{v['raw_tokens_per_s']:.1f} | {v['tokens_per_s_vs_raw']:.3f} |"
            )
    lines += [
        "",
        "## (c) Five load → release cycles",
        "",
        "| implementation | RSS after each release (MB) | drift (MB) |",
        "|---|---|---|",
    ]
    for k, v in r.items():
        if k.startswith("cycles/"):
            vals = v["released_rss"]
            drift = (max(vals[1:]) - vals[0]) / MB
            lines.append(f"| {k[7:]} | {', '.join(_mb(x) for x in vals)} | {drift:+.1f} |")
    lines += [
        "",
        "## (d) Worker processes on the same GGUF",
        "",
        "| implementation | workers | total PSS (MB) | total RSS (MB) |",
        "|---|---|---|---|",
    ]
    for k, v in r.items():
        if k.startswith("workers"):
            lines.append(
                f"| {k.split('/', 1)[1]} | {v['workers']} | {_mb(v['pss_total'])} | "
                f"{_mb(v['rss_total'])} |"
            )
    ppl_path = ROOT / "benchmarks" / "results" / "perplexity.json"
    if ppl_path.is_file():
        ppl = json.loads(ppl_path.read_text())
        q = ppl.get("quality_vs_fp32_percent", {})
        lines += [
            "",
            f"## Quality: perplexity on the same {ppl['tokens']} tokens",
            "",
            "| backend / mode | perplexity | quality vs fp32 |",
            "|---|---|---|",
        ]
        for k, v in ppl["perplexity"].items():
            lines.append(f"| {k} | {v:.2f} | {q.get(k, float('nan')):.1f} % |")
        lines += [
            "",
            "The transformers checkpoint is dequantised from the Q4_1 GGUF (the only "
            "SmolLM2 weights available offline), so fp32 is the Q4_1 model in full "
            "precision: the column measures what each mode loses on top of that, not "
            "against the original bf16 release.",
        ]
    for png in _plots(r):
        lines += ["", f"![{png}](img/{png})"]
    scale = load_scale()
    lines += render_scale(scale)
    png = _scale_plot(r, scale)
    if png:
        lines += ["", f"![{png}](img/{png})"]
    from benchmarks.server_bench import render_section  # results/server_*.json (#14)

    lines += render_section()
    return "\n".join(lines) + "\n"


KEEP_FROM = "## Containers, cold starts and memory pressure"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks/results/summary.json"
    summary = json.loads(path.read_text())
    DOCS.mkdir(exist_ok=True)
    target = DOCS / "benchmarks.md"
    # sections written by other scripts (cold starts, pressure) follow this marker and
    # are kept: the report regenerates only what it owns
    kept = ""
    if target.exists():
        old = target.read_text()
        at = old.find(KEEP_FROM)
        if at != -1:
            kept = "\n" + old[at:]
    target.write_text(render(summary) + kept)
    print(f"wrote {DOCS / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
