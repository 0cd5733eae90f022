"""What the ingress's limits cost: tokens/s with them against the same server without them.

One server process holds SmolLM2-135M once and serves the OpenAI routes twice, on one
uvicorn on 127.0.0.1:

- ``/base``: the routes as they were before the limits (``serve/openai_routes.py`` at
  commit :data:`BASELINE`, read with ``git show``): no key, no body limit, no schema
  bound, no timeout, no disconnect watch;
- ``/guarded``: today's routes with every limit on (API key, 1 MiB body limit, schema
  bound, 300 s timeout, disconnect watch).

Both wrap the same chat model, so the only difference is the ingress code. The client (this
process) sends the same requests to both, interleaved (both see the same machine load):
plain chat, streamed chat and chat under a JSON schema, ``--max-tokens`` each, and
one-token requests for the per-request cost. Target: guarded >= 0.98x base tokens/s.

On a shared machine the end-to-end figures swing by tens of percent from one request to
the next, far more than the 2 % to resolve. So the ingress's own cost is also measured
alone: both route versions in this process (``httpx.ASGITransport``, no network) over a
stub chat model that answers at once (a stub isolates the ingress: the model's time is
what the end-to-end part measures), 64-token answers plain and streamed; the extra time per
request of the guarded routes, over the time the real model takes for 64 tokens (its
end-to-end median), is the share of tokens/s the limits cost.

Run: ``.venv/bin/python benchmarks/ingress_limits_bench.py`` (about 4 minutes on 2 cores).
Writes ``benchmarks/results/ingress_limits.json`` with the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from benchmarks.machine import machine_info  # noqa: E402

#: The commit whose routes had no limits (the parent of the ingress hardening).
BASELINE = "e1912e4cceae406e767bdf7bb1126474c8c132c3"
RESULTS = REPO / "benchmarks" / "results"
KEY = "bench-ingress-key-0123456789abcdef"
PROMPT = "Write a long, detailed description of how resistivity surveys find groundwater."
SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "maxLength": 400},
        "depths_m": {"type": "array", "items": {"type": "number"}, "maxItems": 20},
    },
    "required": ["summary", "depths_m"],
}
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def _baseline_routes(tmp: Path) -> Any:
    """``openai_routes`` as it was at :data:`BASELINE`, imported from a temp file."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{BASELINE}:src/langchain_setraf/serve/openai_routes.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = tmp / "baseline_openai_routes.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_openai_routes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def serve(port: int) -> None:
    """The server process: one model, the routes before and after, on one uvicorn."""
    import uvicorn
    from fastapi import FastAPI

    from langchain_setraf.serve import openai_routes as routes
    from langchain_setraf.serve.ingress_policy import IngressPolicy
    from langchain_setraf.serve.ray_app import build_service
    from langchain_setraf.serve.ray_config import ModelConfig

    load = {"n_threads": 1, "n_ctx": 2048, "temperature": 0, "seed": 0}
    guarded = build_service(
        ModelConfig(load=load, name="smollm2"), "guarded", policy=IngressPolicy.with_key(KEY)
    )
    with tempfile.TemporaryDirectory(prefix="ingress-bench-") as tmp:
        old = _baseline_routes(Path(tmp))
    base = old.ModelService(
        guarded.chat, guarded.llm, "smollm2", old.ReplicaInfo(replica_id="base"), {}
    )
    app = FastAPI()
    app.mount("/base", old.standalone_app(base))
    app.mount("/guarded", routes.standalone_app(guarded))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


class _InstantChat:
    """Stub chat model: a 64-token answer at once (isolates the ingress's own time)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def _usage(self) -> Any:
        return {"input_tokens": 20, "output_tokens": self.n, "total_tokens": 20 + self.n}

    async def ainvoke(self, *args: Any, **kwargs: Any) -> Any:
        from langchain_core.messages import AIMessage

        meta = {"finish_reason": "length"}
        return AIMessage(content="x" * self.n, usage_metadata=self._usage(), response_metadata=meta)

    async def astream(self, *args: Any, **kwargs: Any) -> Any:
        from langchain_core.messages import AIMessageChunk

        for _ in range(self.n):
            yield AIMessageChunk(content="x")
        yield AIMessageChunk(
            content="", usage_metadata=self._usage(), response_metadata={"finish_reason": "length"}
        )


def ingress_overhead(n_requests: int, n_tokens: int) -> dict[str, Any]:
    """Seconds per request of each route version over the stub model, in this process."""
    from langchain_setraf.serve import openai_routes as routes
    from langchain_setraf.serve.ingress_policy import IngressPolicy

    with tempfile.TemporaryDirectory(prefix="ingress-bench-") as tmp:
        old = _baseline_routes(Path(tmp))
    stub = _InstantChat(n_tokens)
    apps = {
        "base": (old.standalone_app(old.ModelService(stub, None, "m", old.ReplicaInfo("b"))), {}),
        "guarded": (
            routes.standalone_app(
                routes.ModelService(
                    stub, None, "m", routes.ReplicaInfo("g"), policy=IngressPolicy.with_key(KEY)
                )
            ),
            {"Authorization": f"Bearer {KEY}"},
        ),
    }
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}

    async def run(name: str, stream: bool) -> float:
        app, headers = apps[name]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(20):  # warm
                await client.post("/v1/chat/completions", json=body, headers=headers)
            t0 = time.perf_counter()
            for _ in range(n_requests):
                r = await client.post(
                    "/v1/chat/completions", json={**body, "stream": stream}, headers=headers
                )
                r.raise_for_status()
            return (time.perf_counter() - t0) / n_requests

    out: dict[str, Any] = {}
    for kind, stream in (("plain", False), ("stream", True)):
        runs: dict[str, list[float]] = {"base": [], "guarded": []}
        for i in range(6):  # interleaved
            for name in ("base", "guarded") if i % 2 == 0 else ("guarded", "base"):
                runs[name].append(asyncio.run(run(name, stream)))
        med = {k: statistics.median(v) for k, v in runs.items()}
        out[kind] = {
            "ms_per_request": {k: round(v * 1000, 3) for k, v in med.items()},
            "extra_ms_per_request": round((med["guarded"] - med["base"]) * 1000, 3),
        }
    return out


def _request(url: str, auth: bool, kind: str, max_tokens: int) -> tuple[int, float]:
    """(completion tokens, seconds) of one chat request of ``kind``."""
    body: dict[str, Any] = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
    }
    if kind == "schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "survey", "schema": SCHEMA},
        }
    if kind == "stream":
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    headers = {"Authorization": f"Bearer {KEY}"} if auth else {}
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=TIMEOUT)
    wall = time.perf_counter() - t0
    r.raise_for_status()
    if kind == "stream":
        events = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: {")]
        usage = json.loads(events[-1])["usage"]
    else:
        usage = r.json()["usage"]
    return int(usage["completion_tokens"]), wall


def _wait_up(base: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the bench server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/guarded/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the bench server did not start within 300 s")


def main() -> None:
    """Start the server process, measure both paths interleaved, write the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--alone", action="store_true", help="only the in-process ingress part")
    args = parser.parse_args()
    if args.alone:
        print(json.dumps(ingress_overhead(200, args.max_tokens), indent=2))
        return
    if args.serve is not None:
        serve(args.serve)
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], env=env, start_new_session=True
    )
    root = f"http://127.0.0.1:{port}"
    try:
        _wait_up(root, proc, time.monotonic() + 300)
        paths = {"base": (f"{root}/base", False), "guarded": (f"{root}/guarded", True)}
        kinds = ("plain", "stream", "schema")
        for url, auth in paths.values():  # warm both (first schema compiles its grammar)
            for kind in kinds:
                _request(url, auth, kind, 4)
        tokens: dict[str, dict[str, list[float]]] = {p: {k: [] for k in kinds} for p in paths}
        counts: dict[str, dict[str, list[int]]] = {p: {k: [] for k in kinds} for p in paths}
        one_token_ms: dict[str, list[float]] = {p: [] for p in paths}
        for i in range(args.rounds):
            order = list(paths) if i % 2 == 0 else list(reversed(paths))
            for kind in kinds:
                for name in order:
                    url, auth = paths[name]
                    n, wall = _request(url, auth, kind, args.max_tokens)
                    tokens[name][kind].append(n / wall)
                    counts[name][kind].append(n)
            for _ in range(3):
                for name in order:
                    url, auth = paths[name]
                    one_token_ms[name].append(_request(url, auth, "plain", 1)[1] * 1000)
    finally:
        proc.terminate()
        proc.wait(30)
    med = {
        p: {k: round(statistics.median(v), 2) for k, v in per.items()} for p, per in tokens.items()
    }
    all_med = {
        p: statistics.median([x for v in per.values() for x in v]) for p, per in tokens.items()
    }
    lat = {p: round(statistics.median(v), 1) for p, v in one_token_ms.items()}
    alone = ingress_overhead(200, args.max_tokens)
    for kind in ("plain", "stream"):  # the extra time over the real model's time for the answer
        model_s = args.max_tokens / statistics.median(
            tokens["base"][kind] + tokens["guarded"][kind]
        )
        alone[kind]["share_of_answer_time"] = round(
            alone[kind]["extra_ms_per_request"] / 1000 / model_s, 5
        )
    result = {
        "scenario": "one request at a time through uvicorn on 127.0.0.1: the OpenAI routes "
        f"before the limits (commit {BASELINE[:7]}) vs with them (key, 1 MiB body, schema "
        "bound, 300 s timeout, disconnect watch), same loaded model",
        "model": "SmolLM2-135M-Instruct Q4_1, in-process GGUF, n_threads=1",
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "tokens_per_s": {
            p: {k: [round(x, 2) for x in v] for k, v in per.items()} for p, per in tokens.items()
        },
        "completion_tokens": counts,
        "median_tokens_per_s": med,
        "ratio_guarded_over_base": {k: round(med["guarded"][k] / med["base"][k], 3) for k in kinds},
        "ratio_guarded_over_base_all": round(all_med["guarded"] / all_med["base"], 3),
        "target": ">= 0.98",
        "ingress_alone": alone,
        "limits_cost_share_of_tokens_per_s": max(
            alone[k]["share_of_answer_time"] for k in ("plain", "stream")
        ),
        "median_one_token_request_ms": lat,
        "per_request_overhead_ms": round(lat["guarded"] - lat["base"], 1),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
        "machine": machine_info(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingress_limits.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
