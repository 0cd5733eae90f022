"""A peer (raw llama-cpp-python, ``LlamaCpp``, llama.cpp's default ``repack``) killed by a
CPU fault in a child process is a result on this CPU, not a failure of ours.

:func:`skip_if_cpu_fault` turns such a death into a skip that names the CPU, the signal and
the package's repack probe verdict, after checking that the probe predicted it: a crash on
a CPU where the probe says the extra buffer types run still fails the test.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from langchain_setraf.backends.gguf.repack_probe import CPU_FAULT_SIGNALS, repack_verdict


def cpu_fault(returncode: int) -> signal.Signals | None:
    """The CPU-fault signal (SIGILL, SIGSEGV, SIGBUS, SIGFPE) a child died of, else None."""
    if returncode < 0 and -returncode in CPU_FAULT_SIGNALS:
        return signal.Signals(-returncode)
    return None


def skip_if_cpu_fault(proc: subprocess.CompletedProcess[str], what: str) -> None:
    """Skip the test, naming why, when ``proc`` (running ``what``) died of a CPU fault that
    the repack probe predicts on this machine; fail it when the probe says it should run."""
    sig = cpu_fault(proc.returncode)
    if sig is None:
        return
    verdict = repack_verdict()
    assert verdict is not None and not verdict.supported, (
        f"{what} died with {sig.name}, but the repack probe says llama.cpp's extra buffer "
        f"types run on this CPU ({verdict}): {proc.stderr[-2000:]}"
    )
    pytest.skip(
        f"{what} crashed ({sig.name}, signal {int(sig)}) on this CPU ({verdict.cpu}): "
        f"llama.cpp's CPU extra buffer types cannot run here ({verdict.detail}); a peer's "
        "crash is recorded, not a failure of ours (docs/benchmarks.md, 'Repacking and the CPU')"
    )
