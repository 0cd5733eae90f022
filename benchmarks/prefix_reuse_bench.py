"""Prefix reuse between two ERT interpretations: time to first token (issue 23).

The interpretation chain puts its fixed instructions first (the system message), then the
survey's facts and form. llama.cpp keeps the KV state of the last prompt and evaluates only
what differs (llama-cpp-python's prefix match in this process; the slot's prompt cache on a
server), so a second interpretation re-uses the instructions.

Measured in one run, on one warm ``ChatGGUF`` (SmolLM2-135M, in-process, greedy), the time
from ``stream()`` to the first decoded text of:

1. survey A (the first interpretation: the whole prompt is evaluated);
2. survey B (a different survey: only the fixed instructions are shared);
3. survey A again (the whole prompt is shared with an earlier one... but not with the
   last one, B: llama-cpp-python keeps one prompt's state);
4. survey A once more right after 3 (the whole prompt is the previous one).

and the number of prompt tokens each shares with the previous prompt. Target of the issue:
the second interpretation on the same instructions ≤ 0.5× the first.

Run: ``python -m benchmarks.prefix_reuse_bench``. Writes
``benchmarks/results/prefix_reuse.json`` with the CPU.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SURVEY_A = REPO / "examples" / "two_layer_wenner.dat"
SURVEY_B = REPO / "tests" / "data" / "ert" / "gimli_slagdump.ohm"


def time_to_first_text(chain: Any, survey: Path) -> tuple[float, float]:
    """Seconds to the first decoded text, and to the end, of one interpretation."""
    t0 = time.perf_counter()
    first = None
    for snap in chain.stream({"survey": survey, "context": ""}):
        if first is None and getattr(snap, "raw_text", ""):
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return (first if first is not None else total), total


def main() -> int:
    sys.path[:0] = [str(REPO), str(REPO / "src")]
    from benchmarks.machine import machine_info
    from langchain_setraf import ChatGGUF
    from langchain_setraf.ert.chains import _messages, as_summary, interpretation_chain, spec_of

    chat = ChatGGUF(n_ctx=4096, temperature=0, seed=0, max_tokens=400, n_threads=2)
    chat.load()
    chain = interpretation_chain(chat, language="en")

    def prompt_ids(survey: Path) -> list[int]:
        summary = as_summary(survey, "en")
        msgs = _messages(summary, spec_of(summary), "en", "", example=False)
        rendered = chat._render([{"role": "system", "content": str(msgs[0].content)},
                                 {"role": "user", "content": str(msgs[1].content)}])  # fmt: skip
        return chat.prompt_token_ids(rendered)

    def shared(a: list[int], b: list[int]) -> int:
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        return n

    ids = {"A": prompt_ids(SURVEY_A), "B": prompt_ids(SURVEY_B)}
    order = [("A", SURVEY_A), ("B", SURVEY_B), ("A", SURVEY_A), ("A", SURVEY_A)]
    rows: list[dict[str, Any]] = []
    previous: list[int] = []
    for name, path in order:
        ttft, total = time_to_first_text(chain, path)
        rows.append(
            {
                "survey": name,
                "prompt_tokens": len(ids[name]),
                "shared_with_previous": shared(previous, ids[name]),
                "ttft_s": ttft,
                "total_s": total,
            }
        )
        previous = ids[name]
        print(rows[-1], flush=True)
    first = rows[0]["ttft_s"]
    for row in rows:
        row["ttft_vs_first"] = row["ttft_s"] / first
    report = {"rows": rows, "machine": machine_info()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "prefix_reuse.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
