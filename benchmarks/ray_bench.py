"""Ray Serve figures on this machine: routing across replicas, and the cost of the Ray hop.

1. **Routing.** Aggregate completion tokens/s of 8 concurrent chat requests through the Ray
   proxy to 1 replica, then to 2 replicas (in-process GGUF, one thread each), on a two-node
   cluster on 127.0.0.1. On 2 cores the second replica can at best use the second core: the
   figure shows that requests are spread, not that Ray scales a 2-core box.
2. **The Ray hop.** Single-request tokens/s of ``ChatGGUF(server_url=...)`` straight to one
   llama-server (the xllamacpp host) versus through the Ray proxy to a replica attached to
   that same server. Target: the Ray path >= 0.9x the direct one.

Run: ``.venv/bin/python benchmarks/ray_bench.py`` (about 5 minutes on 2 cores). Writes
``benchmarks/results/ray_routing.json`` and ``benchmarks/results/ray_hop.json`` with the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from benchmarks.machine import machine_info  # noqa: E402
from helpers.ray_cluster import free_port, local_cluster  # noqa: E402
from helpers.server_proc import llama_server  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
PROMPT = "Write a long, detailed description of how resistivity surveys find groundwater."
TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def _deploy(app: str, prefix: str, port: int, model: dict[str, Any], replicas: int) -> str:
    from langchain_setraf.serve.ray_app import deploy
    from langchain_setraf.serve.ray_config import RayServeConfig

    cfg = RayServeConfig.model_validate(
        {
            "model": model,
            "deployment": {"num_replicas": replicas, "num_cpus": 0.5, "max_ongoing_requests": 4},
            "http": {"port": port, "proxy_location": "HeadOnly"},
            "app_name": app,
            "route_prefix": prefix,
            "ray_address": None,
        }
    )
    deploy(cfg)
    return f"http://127.0.0.1:{port}{prefix}/v1"


def _one(url: str, model: str, max_tokens: int) -> tuple[int, str]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    r = httpx.post(f"{url}/chat/completions", json=body, timeout=TIMEOUT)
    r.raise_for_status()
    data = r.json()
    return int(data["usage"]["completion_tokens"]), str(r.headers["x-setraf-replica"])


def _aggregate(url: str, model: str, n: int, max_tokens: int) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        out = list(pool.map(lambda _: _one(url, model, max_tokens), range(n)))
    wall = time.perf_counter() - t0
    tokens = sum(t for t, _ in out)
    per_replica: dict[str, int] = {}
    for _, rep in out:
        per_replica[rep] = per_replica.get(rep, 0) + 1
    return {
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 2),
        "requests_per_replica": per_replica,
        "loadavg_1min_before": round(load_before, 2),
    }


def routing(port: int, rounds: int, max_tokens: int) -> dict[str, Any]:
    """8 concurrent requests on 1 replica, then on 2 (interleaved rounds)."""
    from ray import serve

    model = {"uri": "default", "name": "smollm2", "load": {"n_threads": 1, "n_ctx": 1024}}
    runs: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    for _ in range(rounds):
        for replicas in (1, 2):
            url = _deploy(f"r{replicas}", f"/r{replicas}", port, model, replicas)
            _one(url, "smollm2", 4)  # warm the route
            runs[str(replicas)].append(_aggregate(url, "smollm2", 8, max_tokens))
            serve.delete(f"r{replicas}")
    med = {k: round(statistics.median(r["tokens_per_s"] for r in v), 2) for k, v in runs.items()}
    return {
        "scenario": "8 concurrent chat requests through the Ray proxy, 1 vs 2 replicas "
        "(max_ongoing_requests=4: the proxy prefers its own node's replica until it is full)",
        "max_tokens": max_tokens,
        "replica": "ChatGGUF in-process, SmolLM2-135M Q4_1, n_threads=1",
        "runs": runs,
        "median_tokens_per_s": med,
        "ratio_2_over_1": round(med["2"] / med["1"], 3),
    }


def _chat_rate(base_url: str, model: str | None, n: int, max_tokens: int) -> list[float]:
    from langchain_setraf import ChatGGUF

    chat = ChatGGUF(server_url=base_url, server_model=model, temperature=0, max_tokens=max_tokens)
    rates = []
    for _ in range(n):
        t0 = time.perf_counter()
        msg = chat.invoke(PROMPT)
        wall = time.perf_counter() - t0
        rates.append(msg.usage_metadata["output_tokens"] / wall)
    return rates


def _latency(base_url: str) -> float:
    """Milliseconds of one chat request that generates one token (raw HTTP, no client)."""
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}
    t0 = time.perf_counter()
    r = httpx.post(f"{base_url}/chat/completions", json=body, timeout=TIMEOUT)
    r.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def hop(port: int, rounds: int, max_tokens: int) -> dict[str, Any]:
    """The attach client straight to a llama-server vs through Ray to the same server."""
    from ray import serve

    from langchain_setraf.models import default_gguf_path

    tmp = tempfile.TemporaryDirectory(prefix="ray-bench-")
    log_dir = Path(tmp.name)
    # one thread: on a shared 2-core box llama.cpp's thread barrier collapses under load
    with llama_server(default_gguf_path(), log_dir, parallel=2, threads=1, alias="smol") as srv:
        model = {"uri": f"openai:{srv.base_url}", "name": "smol-ray", "load": {}}
        ray_url = _deploy("hop", "/hop", port, model, 1)
        direct: list[float] = []
        via_ray: list[float] = []
        _chat_rate(srv.base_url, None, 1, 8)
        _chat_rate(ray_url, None, 1, 8)
        lat_direct: list[float] = []
        lat_ray: list[float] = []
        for _ in range(rounds):  # interleaved: both see the same machine load
            direct += _chat_rate(srv.base_url, None, 1, max_tokens)
            via_ray += _chat_rate(ray_url, None, 1, max_tokens)
            for _ in range(3):  # one-token requests: the per-request cost of each path
                lat_direct.append(_latency(srv.base_url))
                lat_ray.append(_latency(ray_url))
        serve.delete("hop")
    tmp.cleanup()
    d, r = statistics.median(direct), statistics.median(via_ray)
    ld, lr = statistics.median(lat_direct), statistics.median(lat_ray)
    return {
        "scenario": "one request at a time: ChatGGUF(server_url) direct vs through Ray Serve",
        "server": "xllamacpp host, SmolLM2-135M Q4_1, --parallel 2, -t 1",
        "max_tokens": max_tokens,
        "direct_tokens_per_s": [round(x, 2) for x in direct],
        "ray_tokens_per_s": [round(x, 2) for x in via_ray],
        "median_direct": round(d, 2),
        "median_ray": round(r, 2),
        "ratio_ray_over_direct": round(r / d, 3),
        "target": ">= 0.9",
        "one_token_request_ms_direct": [round(x, 1) for x in lat_direct],
        "one_token_request_ms_ray": [round(x, 1) for x in lat_ray],
        "median_one_token_ms_direct": round(ld, 1),
        "median_one_token_ms_ray": round(lr, 1),
        "ray_hop_overhead_ms": round(lr - ld, 1),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    """Run both scenarios on a fresh two-node cluster and write the results JSON."""
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--only", choices=["routing", "hop"], default=None)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with local_cluster(cpus_per_node=1) as cluster:
        ray.init(address=cluster.address, log_to_driver=False)
        startup = time.perf_counter() - t0
        port = free_port()
        try:
            for name, fn in (("routing", routing), ("hop", hop)):
                if args.only not in (None, name):
                    continue
                result = fn(port, args.rounds, args.max_tokens)
                result["machine"] = machine_info()
                result["cluster_start_s"] = round(startup, 1)
                path = RESULTS / f"ray_{name}.json"
                path.write_text(json.dumps(result, indent=2) + "\n")
                print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
        finally:
            from ray import serve

            serve.shutdown()
            ray.shutdown()


if __name__ == "__main__":
    main()
