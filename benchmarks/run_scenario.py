"""One benchmark scenario in a fresh process; prints one JSON line.

Usage: python -m benchmarks.run_scenario IMPL SCENARIO [CHECKPOINT]

IMPL: setraf-gguf | setraf-gguf-nommap | raw-llama | lc-llamacpp |
      setraf-hf-{fp32,bf16,nf4,int8} | lc-hf-pipeline-{fp32,bf16}
SCENARIO: one (a: one chain) | four (b: four chains on one model, one process) |
          cycles (c: five load → release → reload cycles) | worker (d: one of N workers) |
          speed (timing ratios for a and b, both sides alternating in one process)

Environment: ``SETRAF_BENCH_GGUF`` replaces the embedded SmolLM2 GGUF (the synthetic
scale models use it), ``SETRAF_BENCH_TOKENS`` the number of tokens generated.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from benchmarks.crash import child_outcome, default_peer_crash

PROMPT = "List the numbers from 1 to 100, separated by commas: 1, 2, 3,"
#: CI smoke runs (pytest --benchmark-disable) generate less and time once
QUICK = os.environ.get("SETRAF_BENCH_QUICK") == "1"
N_TOKENS = int(os.environ.get("SETRAF_BENCH_TOKENS") or (16 if QUICK else 96))
#: identical sampling for every GGUF implementation: greedy, no repetition penalty
SAMPLING = {"temperature": 0.0, "top_p": 0.95, "top_k": 40, "repeat_penalty": 1.0}


def _gguf_path() -> str:
    from langchain_setraf.models import default_gguf_path

    return os.environ.get("SETRAF_BENCH_GGUF") or str(default_gguf_path())


def _mem() -> dict[str, Any]:
    from langchain_setraf.memory import memory_snapshot

    return memory_snapshot().as_dict()


class Impl:
    """Build / call / drop one model object of an implementation."""

    def __init__(self, name: str, ckpt: str | None) -> None:
        self.name, self.ckpt = name, ckpt

    def make(self) -> Any:
        n = self.name
        if n.startswith("setraf-gguf"):
            from langchain_setraf import GGUFLLM

            return GGUFLLM(
                model_path=_gguf_path(),
                max_tokens=N_TOKENS,
                use_mmap=n != "setraf-gguf-nommap",
                **SAMPLING,
            )
        if n == "raw-llama":
            import llama_cpp

            return llama_cpp.Llama(model_path=_gguf_path(), n_ctx=2048, verbose=False)
        if n == "raw-llama-norepack":  # the speed reference where llama.cpp's default crashes
            import llama_cpp

            from langchain_setraf.backends.gguf.backend import model_params

            with model_params(llama_cpp, use_extra_bufts=False):
                return llama_cpp.Llama(model_path=_gguf_path(), n_ctx=2048, verbose=False)
        if n == "lc-llamacpp":
            from langchain_community.llms import LlamaCpp

            return LlamaCpp(
                model_path=_gguf_path(), max_tokens=N_TOKENS, n_ctx=2048, verbose=False, **SAMPLING
            )
        if n.startswith("setraf-hf-"):
            from langchain_setraf import TransformersLLM

            return TransformersLLM(
                model=self.ckpt,
                quantization=n.rsplit("-", 1)[1],
                temperature=0,
                max_tokens=N_TOKENS,
                repetition_penalty=1.0,
            )
        if n.startswith("lc-hf-pipeline-"):
            import torch
            from langchain_huggingface import HuggingFacePipeline

            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[n.rsplit("-", 1)[1]]
            return HuggingFacePipeline.from_model_id(
                model_id=self.ckpt,
                task="text-generation",
                model_kwargs={"dtype": dtype},
                pipeline_kwargs={
                    "max_new_tokens": N_TOKENS,
                    "do_sample": False,
                    "return_full_text": False,
                },
            )
        raise SystemExit(f"unknown impl {n}")

    def call(self, obj: Any, max_tokens: int | None = None) -> str:
        if self.name.startswith("raw-llama"):
            out = obj.create_completion(PROMPT, max_tokens=max_tokens or N_TOKENS, **SAMPLING)
            return str(out["choices"][0]["text"])
        if max_tokens is not None:
            if self.name.startswith("lc-hf"):
                return str(obj.invoke(PROMPT))  # HuggingFacePipeline takes no per-call limit
            return str(obj.invoke(PROMPT, max_tokens=max_tokens))
        return str(obj.invoke(PROMPT))

    def stream_first(self, obj: Any) -> float:
        t0 = time.perf_counter()
        if self.name.startswith("raw-llama"):
            it = obj.create_completion(PROMPT, max_tokens=4, temperature=0, stream=True)
        else:
            it = obj.stream(PROMPT)
        for _ in it:
            break
        dt = time.perf_counter() - t0
        close = getattr(it, "close", None)
        if close:
            close()
        return dt

    def drop(self, obj: Any) -> None:
        if self.name.startswith("setraf"):
            obj.release()
        elif self.name.startswith("raw-llama"):
            obj.close()
        del obj
        gc.collect()
        from langchain_setraf.memory import give_back_memory

        give_back_memory()


@lru_cache(maxsize=1)
def _vocab() -> Any:
    """The GGUF's tokenizer alone (no weights), to count tokens the same way for everyone."""
    import llama_cpp

    return llama_cpp.Llama(model_path=_gguf_path(), vocab_only=True, verbose=False)


def _count_tokens(text: str) -> int:
    return len(_vocab().tokenize(text.encode("utf-8"), add_bos=False))


def _speed(impl: Impl) -> dict[str, Any]:
    """Timing ratios measured inside one process, the two sides alternating.

    Separate processes on a shared 2-core VM differ in speed by up to ±30 % from one
    start to the next; alternating the two sides of each ratio in one process puts both
    under the same conditions. Memory is measured by the other scenarios, each in its
    own process.

    * load: one object making four first calls (1 token each) vs four objects making a
      first call each: the same generation work, so the difference is what loading the
      model for each object costs;
    * tokens/s: ``impl`` vs raw llama-cpp-python on the same file, alternating calls.
    """
    rounds = 1 if QUICK else 3
    one_s: list[float] = []
    four_s: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        obj = impl.make()
        for _ in range(4):
            impl.call(obj, max_tokens=1)
        one_s.append(time.perf_counter() - t0)
        impl.drop(obj)
        del obj
        t0 = time.perf_counter()
        objs = [impl.make() for _ in range(4)]
        for o in objs:
            impl.call(o, max_tokens=1)
        four_s.append(time.perf_counter() - t0)
        for o in objs:
            impl.drop(o)
        objs.clear()
    # raw llama-cpp-python with its defaults, or with its extra buffer types off where
    # they crash on this CPU (GGUFLLM's own default is off: the same kernels either way)
    crash = default_peer_crash()
    raw = Impl("raw-llama-norepack" if crash else "raw-llama", None)
    sides = {"impl": (impl, impl.make()), "raw": (raw, raw.make())}
    for side, o in sides.values():
        side.call(o, max_tokens=1)  # warm both
    best = dict.fromkeys(sides, float("inf"))
    tokens = dict.fromkeys(sides, 0)
    for _ in range(2 if QUICK else 5):
        for name, (side, o) in sides.items():
            t0 = time.perf_counter()
            text = side.call(o)
            dt = time.perf_counter() - t0
            if dt < best[name]:
                best[name], tokens[name] = dt, _count_tokens(text)
    tps = {name: tokens[name] / best[name] for name in sides}
    return {
        "one_object_four_calls_s": min(one_s),
        "four_objects_s": min(four_s),
        "four_vs_one_load": min(four_s) / min(one_s),
        "tokens_per_s": tps["impl"],
        "raw_tokens_per_s": tps["raw"],
        "tokens_per_s_vs_raw": tps["impl"] / tps["raw"],
        "raw_reference": raw.name if crash is None else f"{raw.name} (raw-llama {crash})",
    }


def run_workers(impl: str, n: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Scenario (d): ``n`` worker processes on the same model; PSS summed while all live."""
    from langchain_setraf.memory import memory_snapshot

    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.run_scenario", impl, "worker"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for _ in range(n)
    ]
    try:
        reports = []
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            if not line:
                outcome = child_outcome(p.wait(timeout=120))
                if outcome is not None:  # a peer's crash on this CPU is its result
                    return {"workers": n, "outcome": outcome}
                raise RuntimeError(f"worker {p.pid} ({impl}) exited without a report")
            reports.append(json.loads(line))
        time.sleep(0.2)
        snaps = [memory_snapshot(p.pid) for p in procs]
    finally:
        for p in procs:
            try:
                p.communicate("\n", timeout=120)
            except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
                p.kill()
    return {
        "workers": n,
        "pss_total": sum(s.pss or 0 for s in snaps),
        "rss_total": sum(s.rss for s in snaps),
        "uss_total": sum(s.uss or 0 for s in snaps),
        "mem": snaps[0].as_dict(),
        "reports": reports,
    }


def main() -> None:
    impl_name, scenario = sys.argv[1], sys.argv[2]
    ckpt = sys.argv[3] if len(sys.argv) > 3 else None
    impl = Impl(impl_name, ckpt)
    _import_libs(impl_name)
    from langchain_setraf.memory import give_back_memory

    give_back_memory()
    base = _mem()
    out: dict[str, Any] = {"impl": impl_name, "scenario": scenario, "base": base}
    if scenario in ("one", "worker"):
        t0 = time.perf_counter()
        obj = impl.make()
        impl.call(obj, max_tokens=1)
        out["load_s"] = time.perf_counter() - t0
        out["ttft_s"] = impl.stream_first(obj)
        best = None
        for _ in range(
            1 if QUICK else 3
        ):  # best of three: the machine has two cores and other processes
            t0 = time.perf_counter()
            text = impl.call(obj)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        dt = best
        n = (
            _count_tokens(text)
            if impl_name.endswith(("gguf", "llama", "llamacpp", "nommap"))
            else None
        )
        out["tokens"] = n if n is not None else N_TOKENS
        out["tokens_per_s"] = out["tokens"] / dt
        out["mem"] = _mem()
        if scenario == "worker":  # report, then stay alive while the parent measures PSS
            print(json.dumps(out), flush=True)
            sys.stdin.readline()
            return
    elif scenario == "four":
        t0 = time.perf_counter()
        objs = [impl.make() for _ in range(4)]
        for o in objs:
            impl.call(o, max_tokens=1)
        out["load_s"] = time.perf_counter() - t0
        out["mem"] = _mem()
        if impl_name.startswith("setraf"):
            from langchain_setraf.cache import get_model_cache

            out["loads"] = get_model_cache().stats()["loads"]
    elif scenario == "speed":
        out.update(_speed(impl))
    elif scenario == "cycles":
        released = []
        for _ in range(5):
            obj = impl.make()
            impl.call(obj, max_tokens=2)
            loaded = _mem()
            impl.drop(obj)
            released.append(_mem()["rss"])
        out["mem"] = loaded
        out["released_rss"] = released
    print(json.dumps(out))


def _import_libs(name: str) -> None:
    """Import what the impl needs before the baseline, so import cost is not 'the model'
    (nor the load time: langchain-core and langchain-community take seconds to import)."""
    if "gguf" in name or "llama" in name:
        import llama_cpp  # noqa: F401
    if name.startswith("setraf-gguf"):
        import langchain_setraf.llms
    if name.startswith("setraf-hf"):
        import langchain_setraf.transformers_llm  # noqa: F401
    if "hf" in name:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    if name.startswith("lc-"):
        if "llamacpp" in name:
            import langchain_community.llms  # noqa: F401
        else:
            import langchain_huggingface  # noqa: F401


if __name__ == "__main__":
    main()
