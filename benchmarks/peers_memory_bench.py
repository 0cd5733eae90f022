"""Memory of the same model at the same context under each peer's defaults (issue 23).

SmolLM2-135M Q4_1 (the embedded model) with 8,192 tokens of KV cache in all, loaded and
asked for 8 tokens, each configuration in a fresh process:

- llama-cpp-python's ``Llama(model_path, n_ctx=8192)``: its defaults (weights repacked,
  f16 KV, flash attention off);
- LangChain's ``LlamaCpp(model_path=..., n_ctx=8192)`` (langchain-community): the same
  library under its wrapper's defaults;
- llama-server's own defaults (llama.cpp's server through xllamacpp, only ``-m`` and
  ``-c 8192``: slots chosen by llama.cpp, prompt cache up to 8 GiB, repacked weights);
- ``GGUFLLM(n_ctx=8192)`` with f16, q8_0 and q4_0 KV;
- ``ChatGGUF(server=True, n_ctx=2048, n_parallel=4)``: the managed server, 4 slots of
  2,048 tokens (8,192 in all), its prompt cache capped at one slot.

A configuration whose process crashes (llama.cpp's repacked weights where the CPU
faults: see the repack probe) is reported as crashed. Reported otherwise: RSS and PSS of
the process holding the model (for a server, the server and its supervisor) after the
answer, for an in-process model also before the load (``baseline_*``: Python and the
libraries, imported), and this package's estimate where it makes one. The prompt caches
are empty after one request: their caps are what grows with use (the prompt-cache
benchmark measures that).

Run: ``python -m benchmarks.peers_memory_bench``. Writes
``benchmarks/results/peers_memory.json`` with the CPU and the load average.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
N_CTX = 8192
PROMPT = "The resistivity of wet clay is"
CONFIGS = (
    "llama-cpp-python",
    "langchain LlamaCpp",
    "llama-server defaults",
    "GGUFLLM f16",
    "GGUFLLM q8_0",
    "GGUFLLM q4_0",
    "setraf managed server",
)


def _memory(pids: list[int]) -> dict[str, int]:
    import psutil

    rss = pss = 0
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        rss += int(info.rss)
        pss += int(getattr(info, "pss", 0))
    return {"rss": rss, "pss": pss}


def _llama_server_defaults(model: str) -> dict[str, Any]:
    from langchain_setraf.backends.llama_server.managed import free_port

    port = free_port()
    argv = [sys.executable, "-m", "langchain_setraf.backends.llama_server.xllamacpp_host"]
    argv += ["-m", model, "--port", str(port), "-c", str(N_CTX)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("llama-server (xllamacpp) did not start") from None
                time.sleep(0.5)
        body = json.dumps({"prompt": PROMPT, "n_predict": 8, "temperature": 0}).encode()
        req = urllib.request.Request(
            url + "/completion", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
        with urllib.request.urlopen(url + "/props", timeout=5) as r:
            props = json.load(r)
        out = _memory([proc.pid])
        out["slots"] = props.get("total_slots")
        return out
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        elif proc.returncode < 0:  # the server crashed: report it as this child's crash
            os.kill(os.getpid(), -proc.returncode)


def child(name: str) -> dict[str, Any]:
    """One configuration, in this (fresh) process."""
    from langchain_setraf import GGUFLLM, ChatGGUF, default_gguf_path

    model = str(default_gguf_path())
    out: dict[str, Any] = {"config": name, "n_ctx_total": N_CTX}
    if name.startswith(("llama-cpp-python", "langchain", "GGUFLLM")):
        import llama_cpp
        from langchain_community.llms import LlamaCpp

        # the process before the model: what the model added is rss - baseline_rss
        out.update({f"baseline_{k}": v for k, v in _memory([os.getpid()]).items()})
    if name == "llama-cpp-python":
        import llama_cpp

        llm = llama_cpp.Llama(model_path=model, n_ctx=N_CTX, verbose=False)
        llm.create_completion(PROMPT, max_tokens=8, temperature=0)
        out.update(_memory([os.getpid()]))
    elif name == "langchain LlamaCpp":
        from langchain_community.llms import LlamaCpp

        lc = LlamaCpp(model_path=model, n_ctx=N_CTX, max_tokens=8, temperature=0, verbose=False)
        lc.invoke(PROMPT)
        out.update(_memory([os.getpid()]))
    elif name == "llama-server defaults":
        out.update(_llama_server_defaults(model))
    elif name.startswith("GGUFLLM"):
        kv = name.split()[1]
        g = GGUFLLM(n_ctx=N_CTX, max_tokens=8, temperature=0, type_k=kv, type_v=kv)  # type: ignore[arg-type]
        g.invoke(PROMPT)
        out["estimate"] = g.estimate_memory()
        out.update(_memory([os.getpid()]))
        g.release()
    else:
        from langchain_setraf.backends.llama_server.managed import running_servers

        chat = ChatGGUF(server=True, n_ctx=N_CTX // 4, n_parallel=4, max_tokens=8, temperature=0)
        chat.invoke(PROMPT)
        backend, spec = chat._backend_and_spec()
        out["estimate"] = backend.server_bytes(spec)  # type: ignore[attr-defined]
        out["estimate_split"] = backend.server_split(spec).as_dict()  # type: ignore[attr-defined]
        [status] = [s for s in running_servers() if s.running]
        out.update({"rss": status.rss, "pss": status.pss, "slots": 4})
        chat.release()
    return out


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        print("RESULT " + json.dumps(child(sys.argv[2])), flush=True)
        return 0
    sys.path[:0] = [str(REPO), str(REPO / "src")]
    from benchmarks.crash import child_outcome
    from benchmarks.machine import machine_info

    load_before = os.getloadavg()
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    for name in CONFIGS:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.peers_memory_bench", "child", name],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=REPO,
            check=False,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        crash = child_outcome(done.returncode, done.stderr)
        if crash is not None:  # a peer that crashes here is a result
            rows.append({"config": name, "n_ctx_total": N_CTX, "outcome": crash})
        elif done.returncode != 0 or not lines:
            raise RuntimeError(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
        else:
            rows.append(json.loads(lines[-1].removeprefix("RESULT ")))
        print(rows[-1], flush=True)
    report = {
        "model": "SmolLM2-135M-Instruct Q4_1",
        "rows": rows,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine_info(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "peers_memory.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
