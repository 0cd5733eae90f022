"""A peer that crashes is a result: how a benchmark records it instead of dying with it.

llama.cpp's defaults (its CPU extra buffer types, ``repack`` on) kill the process with
``SIGILL`` on some CPUs (an AMX Xeon with a GCC 12 build: see docs/benchmarks.md,
"Repacking and the CPU"). Raw llama-cpp-python and langchain-community's ``LlamaCpp`` run
with those defaults, so on such a CPU their rows read ``crashed (SIGILL, signal 4)``, and
``GGUFLLM(repack=True)`` rows read ``refused (RepackUnsupportedError)``.
"""

from __future__ import annotations

import signal

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


def default_peer_crash() -> str | None:
    """``crashed (SIGILL, signal 4), predicted by the repack probe`` where llama.cpp's
    default load (extra buffer types on) dies on this CPU, else ``None``: an in-process
    peer (raw llama-cpp-python, ``LlamaCpp``) is then not run in the benchmark's process."""
    verdict = repack_verdict()
    if verdict is None or verdict.supported or verdict.signal is None:
        return None
    sig = signal.Signals(verdict.signal)
    return f"crashed ({sig.name}, signal {int(sig)}), predicted by the repack probe"
