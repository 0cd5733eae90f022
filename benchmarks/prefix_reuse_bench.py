"""Prefix reuse between two ERT interpretations: time to first token (issue 23).

The interpretation chain puts its fixed instructions first (the system message, then the
form's rules), the survey's facts and form last. llama.cpp keeps the KV state of earlier
prompts and evaluates only what differs: in this process llama-cpp-python's prefix match
on the one context, plus the bounded prompt cache (``cache_ram_mib``); over the managed
server its slots and its prompt cache (``--cache-ram``).

Measured in one run, for each of the two (in-process ``ChatGGUF``, then the managed server,
``ChatGGUF(server=True)``; SmolLM2-135M, greedy), the time from ``stream()`` to the first
decoded text of:

1. survey A on a fresh model (the first interpretation: the whole prompt is evaluated);
2. survey B right after (the second interpretation: the instructions are shared);
3. survey A again after B (the prompt cache holds A's whole prompt);
4. survey B on a fresh model again (the baseline of row 2 without the shared prefix).

and the prompt tokens each shares with the previous prompt; beside the wall time, the CPU
seconds to the first text (this process's, plus the server's), which a shared machine's
load disturbs much less. Target of the issue: the second interpretation ≤ 0.5× the first
(row 2 / row 1); row 2 / row 4 is the same survey with and without the shared
instructions.

Run: ``python -m benchmarks.prefix_reuse_bench`` (``OMP_WAIT_POLICY=PASSIVE`` unless set:
llama.cpp's threads then sleep instead of spinning while they wait). Writes
``benchmarks/results/prefix_reuse.json`` with the CPU, the load average and the wait policy.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SURVEY_A = REPO / "examples" / "two_layer_wenner.dat"
SURVEY_B = REPO / "tests" / "data" / "ert" / "gimli_slagdump.ohm"
N_CTX = 4096
CACHE_RAM_MIB = 128


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds this process used, plus those of ``pid`` (the server) when given."""
    import psutil

    used = time.process_time()
    if pid is not None:
        times = psutil.Process(pid).cpu_times()
        used += times.user + times.system
    return used


def time_to_first_text(
    chain: Any, survey: Path, server_pid: int | None
) -> tuple[float, float, float]:
    """Wall seconds to the first decoded text and to the end of one interpretation, and
    the CPU seconds spent to the first text (this process and the server's: on a shared
    machine the CPU time is what the prefix saves, the wall time also counts the waits)."""
    t0, c0 = time.perf_counter(), _cpu_seconds(server_pid)
    first = None
    cpu_first = None
    for snap in chain.stream({"survey": survey, "context": ""}):
        if first is None and getattr(snap, "raw_text", ""):
            first = time.perf_counter() - t0
            cpu_first = _cpu_seconds(server_pid) - c0
    total = time.perf_counter() - t0
    if first is None or cpu_first is None:
        return total, total, _cpu_seconds(server_pid) - c0
    return first, total, cpu_first


def shared(a: list[int], b: list[int]) -> int:
    """Tokens two prompts share from their start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def evaluated_ratio(rows: list[dict[str, Any]]) -> float:
    """The prompt tokens the second interpretation evaluates (its prompt less the prefix
    the first left in the context) against the first's: what the load cannot change."""
    second, first = rows[1], rows[0]
    evaluated = second["prompt_tokens"] - second["shared_with_previous"]
    return round(evaluated / first["prompt_tokens"], 4)


def run(where: str, server: bool) -> dict[str, Any]:
    """The four interpretations on one kind of model; returns its rows and ratios."""
    from langchain_setraf import ChatGGUF
    from langchain_setraf.ert.chains import _messages, as_summary, interpretation_chain, spec_of
    from langchain_setraf.ert.form import json_schema

    def fresh() -> Any:
        chat = ChatGGUF(
            n_ctx=N_CTX,
            temperature=0,
            seed=0,
            max_tokens=400,
            n_threads=2,
            server=server,
            cache_ram_mib=CACHE_RAM_MIB,
            **({"n_parallel": 1} if server else {}),
        )
        chat.load()
        return chat

    def server_pid() -> int | None:
        if not server:
            return None
        from langchain_setraf.backends.llama_server.managed import running_servers

        [info] = [s.info for s in running_servers() if s.running and s.info is not None]
        return info.pid

    chat = fresh()
    pid = server_pid()

    def prompt_ids(survey: Path) -> list[int]:
        """The prompt as the chain sends it: its messages with the form's JSON schema
        (``response_format``), rendered by the model's chat template."""
        summary = as_summary(survey, "en")
        spec = spec_of(summary)
        msgs = _messages(summary, spec, "en", "", example=False)
        fmt = {"type": "json_schema", "schema": json_schema(spec)}
        dicts = chat._plan(msgs, {"response_format": fmt})[0]
        return list(chat.prompt_token_ids(chat._render(dicts)))

    ids = {"A": prompt_ids(SURVEY_A), "B": prompt_ids(SURVEY_B)}
    surveys = {"A": SURVEY_A, "B": SURVEY_B}
    rows: list[dict[str, Any]] = []
    previous: list[int] = []
    for step, (name, note) in enumerate(
        [("A", "fresh model"), ("B", "after A"), ("A", "after B"), ("B", "fresh model")]
    ):
        if step == 3:
            chat.release()
            chat = fresh()
            pid = server_pid()
            previous = []
        chain = interpretation_chain(chat, language="en")
        ttft, total, cpu = time_to_first_text(chain, surveys[name], pid)
        rows.append(
            {
                "survey": name,
                "when": note,
                "prompt_tokens": len(ids[name]),
                "shared_with_previous": shared(previous, ids[name]),
                "ttft_s": round(ttft, 3),
                "ttft_cpu_s": round(cpu, 3),
                "total_s": round(total, 3),
            }
        )
        previous = ids[name]
        print(where, rows[-1], flush=True)
    chat.release()
    first, first_cpu = rows[0]["ttft_s"], rows[0]["ttft_cpu_s"]
    for row in rows:
        row["ttft_vs_first"] = round(row["ttft_s"] / first, 4)
        row["ttft_cpu_vs_first"] = round(row["ttft_cpu_s"] / first_cpu, 4)

    def ratio(key: str, a: int, b: int) -> float:
        return round(rows[a][key] / rows[b][key], 4)

    return {
        "where": where,
        "n_ctx": N_CTX,
        "cache_ram_mib": CACHE_RAM_MIB,
        "rows": rows,
        "second_vs_first_evaluated_tokens": evaluated_ratio(rows),
        "second_vs_first": ratio("ttft_s", 1, 0),
        "second_vs_first_cpu": ratio("ttft_cpu_s", 1, 0),
        "second_vs_same_survey_fresh": ratio("ttft_s", 1, 3),
        "second_vs_same_survey_fresh_cpu": ratio("ttft_cpu_s", 1, 3),
    }


def main() -> int:
    # llama.cpp's OpenMP threads spin while they wait: on a shared machine that burns the
    # CPU seconds measured here and stalls the other thread (benchmarks.md, server
    # bench). Set before llama.cpp loads; the managed server inherits it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path[:0] = [str(REPO), str(REPO / "src")]
    from benchmarks.machine import machine_info

    load_before = os.getloadavg()
    runs = [run("in-process", server=False), run("managed server", server=True)]
    report = {
        "runs": runs,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine_info(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "prefix_reuse.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
