"""A peer that crashes is a result: how a benchmark records it instead of dying with it.

llama.cpp's defaults (its CPU extra buffer types, ``repack`` on) kill the process with
``SIGILL`` on some CPUs (an AMX Xeon with a GCC 12 build: see docs/benchmarks.md,
"Repacking and the CPU"). Raw llama-cpp-python and langchain-community's ``LlamaCpp`` run
with those defaults, so on such a CPU their rows read ``crashed (SIGILL, signal 4)``, and
``GGUFLLM(repack=True)`` rows read ``refused (RepackUnsupportedError)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_setraf.backends.gguf.repack_probe import CPU_FAULT_SIGNALS, repack_verdict


def child_outcome(returncode: int, stderr: str = "") -> str | None:
    """``crashed (SIGILL, signal 4)`` for a child killed by a CPU fault, ``refused
    (RepackUnsupportedError)`` for one that refused ``repack=True``; ``None`` otherwise."""
    if returncode < 0 and -returncode in CPU_FAULT_SIGNALS:
        sig = signal.Signals(-returncode)
        return f"crashed ({sig.name}, signal {int(sig)})"
    if returncode != 0 and "RepackUnsupportedError" in stderr:
        return "refused (RepackUnsupportedError)"
    return None


def run_json_child(
    code: str,
    args: list[str],
    stdin: str,
    env: Mapping[str, str],
    *,
    timeout: float = 900,
) -> dict[str, Any]:
    """Run ``python -c code *args`` with this checkout's ``src`` first on its path, feed it
    ``stdin``, and return the last JSON object line it prints; ``{"outcome": ...}`` when it
    crashed or refused as :func:`child_outcome` says, ``{"error": stderr's tail}`` when it
    failed otherwise."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    full = dict(env)
    full["PYTHONPATH"] = os.pathsep.join([src, full.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full,
    )
    outcome = child_outcome(proc.returncode, proc.stderr)
    if outcome is not None:
        return {"outcome": outcome}
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return dict(json.loads(last))


def default_peer_crash() -> str | None:
    """``crashed (SIGILL, signal 4), predicted by the repack probe`` where llama.cpp's
    default load (extra buffer types on) dies on this CPU, else ``None``: an in-process
    peer (raw llama-cpp-python, ``LlamaCpp``) is then not run in the benchmark's process."""
    verdict = repack_verdict()
    if verdict is None or verdict.supported or verdict.signal is None:
        return None
    sig = signal.Signals(verdict.signal)
    return f"crashed ({sig.name}, signal {int(sig)}), predicted by the repack probe"
