"""``use_mlock=True`` tells the truth: a lock the kernel refuses is an error, not a log line.

Each case runs a child Python with a low ``RLIMIT_MEMLOCK`` (``resource.setrlimit`` before
exec). Root has ``CAP_IPC_LOCK``, which ignores that limit, so the child drops it from its
bounding set before exec (``prctl(PR_CAPBSET_DROP)``; root's capabilities after exec come
from the bounding set). A non-root runner has no ``CAP_IPC_LOCK`` to drop.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from langchain_setraf.backends.gguf.mlock import (
    CAP_IPC_LOCK,
    MemoryLockError,
    check_mlock_allowed,
    has_capability,
    has_ipc_lock_capability,
    locked_bytes,
    memlock_limit,
    verify_locked,
)

PR_CAPBSET_DROP = 24
CAP_SYS_RESOURCE = 24
LOW_LIMIT = 64 * 1024

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_MEMLOCK and /proc are Linux's"
)


def _limit_memlock(soft: int, *, drop_cap: bool) -> Callable[[], None]:
    def preexec() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        if hard != resource.RLIM_INFINITY and soft > hard:
            hard = soft  # raising the hard limit needs CAP_SYS_RESOURCE (root has it)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))
        if drop_cap:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK)")

    return preexec


CHILD = textwrap.dedent(
    """
    import json, sys
    from langchain_setraf.backends.gguf.mlock import has_ipc_lock_capability, locked_bytes, memlock_limit
    mode, model = sys.argv[1], sys.argv[2]
    out = {"cap": has_ipc_lock_capability(), "limit": memlock_limit()[0]}
    if mode == "raw":  # llama.cpp alone, as every wrapper calls it today
        import llama_cpp
        llm = llama_cpp.Llama(model_path=model, n_ctx=256, use_mlock=True, verbose=False)
        out["loaded"] = True
    else:
        from langchain_setraf import GGUFLLM
        from langchain_setraf.backends.gguf.mlock import MemoryLockError
        llm = GGUFLLM(model_path=model, n_ctx=256, max_tokens=2, temperature=0,
                      use_mlock=True, use_mmap=(mode == "mmap"))
        try:
            out["text"] = llm.invoke("Hi")
            out["loaded"] = True
        except MemoryLockError as exc:
            out.update(loaded=False, error=str(exc))
    out["vmlck"] = locked_bytes()
    print(json.dumps(out))
    """
)


def _child(mode: str, soft: int, *, drop_cap: bool = True) -> dict[str, object]:
    from langchain_setraf.models import default_gguf_path

    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(default_gguf_path())],
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=_limit_memlock(soft, drop_cap=drop_cap and os.geteuid() == 0),
        )
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot set RLIMIT_MEMLOCK / drop CAP_IPC_LOCK in a child: {exc}")
    assert proc.returncode == 0, f"child exit {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _model_bytes() -> int:
    from langchain_setraf.models import default_gguf_path

    return default_gguf_path().stat().st_size


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mmap", "nommap"])
def test_low_memlock_limit_is_an_error_naming_the_fix(mode: str) -> None:
    out = _child(mode, LOW_LIMIT)
    assert out["cap"] is False and out["limit"] == LOW_LIMIT
    assert out["loaded"] is False, f"loaded without the lock it asked for: {out}"
    msg = str(out["error"])
    for needle in ("RLIMIT_MEMLOCK", "64.0 KB", "ulimit -l", "LimitMEMLOCK", "IPC_LOCK"):
        assert needle in msg, (needle, msg)
    assert int(out["vmlck"]) == 0  # type: ignore[call-overload]  # refused before llama.cpp


@pytest.mark.slow
def test_llama_cpp_alone_loads_unlocked_under_the_same_limit() -> None:
    """What the check fixes: llama.cpp itself loads, logs, and leaves the model unlocked."""
    out = _child("raw", LOW_LIMIT)
    assert out["loaded"] is True and out["cap"] is False
    assert int(out["vmlck"]) < _model_bytes() // 2  # type: ignore[call-overload]


def _can_raise_memlock_to(n: int) -> bool:
    _, hard = memlock_limit()
    if hard is None or hard >= n:
        return True
    return has_capability(CAP_SYS_RESOURCE)


@pytest.mark.slow
def test_sufficient_limit_locks_the_model() -> None:
    need = 4 * _model_bytes()
    if not _can_raise_memlock_to(need):
        pytest.skip(
            f"the hard RLIMIT_MEMLOCK is below {need} B and raising it needs CAP_SYS_RESOURCE"
        )
    out = _child("mmap", need)
    assert out["loaded"] is True and out["cap"] is False, out
    assert int(out["vmlck"]) >= _model_bytes() * 0.9  # type: ignore[call-overload]


@pytest.mark.slow
def test_cap_ipc_lock_ignores_the_limit() -> None:
    """Root in most containers: CAP_IPC_LOCK locks past RLIMIT_MEMLOCK, and no error."""
    if not has_ipc_lock_capability():
        pytest.skip("this process has no CAP_IPC_LOCK to keep in the child")
    out = _child("mmap", LOW_LIMIT, drop_cap=False)
    assert out["cap"] is True and out["loaded"] is True, out
    assert int(out["vmlck"]) >= _model_bytes() * 0.9  # type: ignore[call-overload]


def test_check_in_process_respects_capability_and_limit() -> None:
    soft, _ = memlock_limit()
    huge = 1 << 50
    if has_ipc_lock_capability() or soft is None:
        check_mlock_allowed(huge, "model.gguf")  # no limit applies: nothing raised
    else:
        with pytest.raises(MemoryLockError, match=r"model\.gguf.*RLIMIT_MEMLOCK"):
            check_mlock_allowed(huge, "model.gguf")


def test_verify_locked_raises_when_llama_cpp_locked_too_little() -> None:
    before = locked_bytes()
    verify_locked(before, 0, "model.gguf")  # nothing to lock: passes
    with pytest.raises(MemoryLockError, match=r"locked only 0 B of about 1\.0 GB"):
        verify_locked(before, 1 << 30, "model.gguf")
