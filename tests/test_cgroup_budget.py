"""The memory budget knows the container's limit: cgroup parsers, and real cgroups.

The real-cgroup tests create a memory cgroup (v1 or v2), move a child Python process into
it after its imports (charges made before the move stay with the old group, so the new
group starts near zero), and load the real SmolLM2 GGUF there. They need root and a
memory controller, and skip with the reason otherwise. Every group is removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_setraf._cgroup import (
    CgroupMemory,
    parse_limit,
    parse_memory_stat,
    parse_proc_cgroup,
    read_cgroup_memory,
)

V1_UNLIMITED = "9223372036854771712\n"
CGROUP_ROOT = Path("/sys/fs/cgroup")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# --------------------------------------------------------------------------- parsers


def test_parse_limit_unlimited_and_numbers() -> None:
    assert parse_limit("max\n") is None
    assert parse_limit(V1_UNLIMITED) is None
    assert parse_limit("2147483648\n") == 2147483648
    assert parse_limit("0") == 0


def test_parse_limit_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="expected 'max' or a byte count, got '12M'"):
        parse_limit("12M")


def test_parse_proc_cgroup_v1_v2_and_hybrid() -> None:
    v1 = "9:name=systemd:/\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
    assert parse_proc_cgroup(v1) == ("/docker/abc", "/")
    assert parse_proc_cgroup("0::/user.slice/app.scope\n") == (None, "/user.slice/app.scope")
    assert parse_proc_cgroup("5:cpuacct,memory:/x\n") == ("/x", None)
    with pytest.raises(ValueError, match="line 2: expected 'id:controllers:path'"):
        parse_proc_cgroup("0::/\nnonsense\n")


def test_parse_memory_stat() -> None:
    stat = parse_memory_stat("cache 4096\ninactive_file 1024\n\ntotal_inactive_file 2048\n")
    assert stat == {"cache": 4096, "inactive_file": 1024, "total_inactive_file": 2048}
    with pytest.raises(ValueError, match=r"memory\.stat line 2"):
        parse_memory_stat("cache 1\nbroken\n")


def test_available_subtracts_reclaimable_page_cache() -> None:
    g = CgroupMemory(version=2, path="/x", limit=1000, usage=800, inactive_file=300)
    assert g.available == 500
    assert CgroupMemory(version=1, path="/x", limit=None, usage=5).available is None
    assert CgroupMemory(version=1, path="/x", limit=100, usage=500).available == 0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_read_v1_tree(tmp_path: Path) -> None:
    group = tmp_path / "memory" / "docker" / "abc"
    _write(tmp_path / "memory" / "memory.limit_in_bytes", V1_UNLIMITED)
    _write(group / "memory.limit_in_bytes", "1073741824\n")
    _write(group / "memory.usage_in_bytes", "536870912\n")
    _write(group / "memory.stat", "cache 1\ntotal_inactive_file 134217728\n")
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/docker/abc\n0::/\n")
    got = read_cgroup_memory(proc, tmp_path)
    assert got == CgroupMemory(1, str(group), 1 << 30, 1 << 29, 1 << 27)
    assert got.available == (1 << 30) - (1 << 29) + (1 << 27)


def test_read_v1_unlimited_and_private_namespace(tmp_path: Path) -> None:
    # the group is mounted at the root (path from /proc not present under the mount)
    _write(tmp_path / "memory" / "memory.limit_in_bytes", V1_UNLIMITED)
    _write(tmp_path / "memory" / "memory.usage_in_bytes", "100\n")
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/kubepods/pod1/c1\n")
    got = read_cgroup_memory(proc, tmp_path)
    assert got is not None and got.limit is None and got.available is None
    assert got.path == str(tmp_path / "memory")


def test_read_v2_parent_limit_binds(tmp_path: Path) -> None:
    _write(tmp_path / "cgroup.controllers", "cpu memory\n")
    parent, child = tmp_path / "app.slice", tmp_path / "app.slice" / "svc"
    _write(parent / "memory.max", "1000000\n")
    _write(parent / "memory.current", "900000\n")
    _write(parent / "memory.stat", "inactive_file 0\n")
    _write(child / "memory.max", "max\n")
    _write(child / "memory.current", "10\n")
    proc = tmp_path / "cgroup"
    _write(proc, "0::/app.slice/svc\n")
    got = read_cgroup_memory(proc, tmp_path)
    assert got is not None and got.path == str(parent)
    assert (got.limit, got.available) == (1000000, 100000)


def test_no_memory_cgroup(tmp_path: Path) -> None:
    assert read_cgroup_memory(tmp_path / "missing", tmp_path) is None
    _write(tmp_path / "cgroup", "0::/\n")  # v2 line but no unified mount here
    assert read_cgroup_memory(tmp_path / "cgroup", tmp_path) is None


def test_budget_uses_cgroup_when_smaller(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_setraf import memory

    small = CgroupMemory(version=2, path="/sys/fs/cgroup/box", limit=64 << 20, usage=0)
    monkeypatch.setattr(memory, "read_cgroup_memory", lambda *a: small)
    n, where = memory.available_memory()
    assert n == 64 << 20 and where.startswith("cgroup /sys/fs/cgroup/box has 64.0 MB left")
    monkeypatch.setenv("SETRAF_CGROUP_BUDGET", "0")
    n, where = memory.available_memory()
    assert n > 64 << 20 and where.startswith("host available")


def test_snapshot_and_cli_show_cgroup(capsys: pytest.CaptureFixture[str]) -> None:
    from langchain_setraf.cli import main
    from langchain_setraf.memory import memory_snapshot

    snap = memory_snapshot()
    own = read_cgroup_memory()
    assert (snap.cgroup_usage is None) == (own is None)
    assert main(["memory", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"cgroup_limit", "cgroup_usage", "cgroup_available"} <= set(data)
    assert main(["memory"]) == 0
    text = capsys.readouterr().out
    if own is not None:
        assert "cgroup" in text


# ----------------------------------------------------------------------- real cgroups


def _cgroup_support() -> str | None:
    """``"v1"``/``"v2"`` where this process can create memory cgroups, else ``None``."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return None
    v1 = CGROUP_ROOT / "memory"
    if (v1 / "memory.limit_in_bytes").is_file() and os.access(v1, os.W_OK):
        return "v1"
    ctl = CGROUP_ROOT / "cgroup.subtree_control"
    if ctl.is_file() and "memory" in ctl.read_text().split() and os.access(CGROUP_ROOT, os.W_OK):
        return "v2"
    return None


CGROUP = _cgroup_support()
needs_cgroup = pytest.mark.skipif(
    CGROUP is None,
    reason="needs root and a writable cgroup memory controller (v1 /sys/fs/cgroup/memory "
    "or v2 with memory in cgroup.subtree_control)",
)


class MemGroup:
    """A memory cgroup this test created: limit, the file to join it, and its counters."""

    def __init__(self, path: Path, version: str) -> None:
        self.path, self.version = path, version

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def set_limit(self, n: int) -> None:
        name = "memory.limit_in_bytes" if self.version == "v1" else "memory.max"
        (self.path / name).write_text(str(n))

    def oom_events(self) -> int:
        """Times the limit was hit (v1 failcnt) or the OOM killer ran (v2 oom_kill)."""
        if self.version == "v1":
            return int((self.path / "memory.failcnt").read_text())
        events = parse_memory_stat((self.path / "memory.events").read_text())
        return events.get("oom_kill", 0) + events.get("max", 0)

    def peak(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == "v1" else "memory.peak"
        p = self.path / name
        return int(p.read_text()) if p.is_file() else None


@pytest.fixture
def mem_group() -> Iterator[MemGroup]:
    assert CGROUP is not None
    base = CGROUP_ROOT / "memory" if CGROUP == "v1" else CGROUP_ROOT
    path = base / f"setraf-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
    except OSError as exc:  # e.g. a read-only cgroupfs in an unprivileged container
        pytest.skip(f"cannot create a memory cgroup under {base}: {exc}")
    try:
        yield MemGroup(path, CGROUP)
    finally:
        # the child has exited; a leftover process (test killed midway) is moved out first
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                (base / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        path.rmdir()


CHILD = textwrap.dedent(
    """
    import json, os, sys
    import llama_cpp  # imported before joining the group: its charge stays outside
    from langchain_setraf import GGUFLLM
    from langchain_setraf.cache import InsufficientMemoryError, get_model_cache
    from langchain_setraf.memory import memory_snapshot

    procs, model, use_mmap = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    llm = GGUFLLM(model_path=model, n_ctx=512, max_tokens=4, temperature=0, use_mmap=use_mmap)
    backend, spec = llm._backend_and_spec()
    estimate = backend.estimate_bytes(spec)
    with open(procs, "w") as fh:
        fh.write(str(os.getpid()))
    snap = memory_snapshot()
    out = {"estimate": estimate, "limit": snap.cgroup_limit, "usage": snap.cgroup_usage}
    try:
        out["text"] = llm.invoke("The capital of France is")
        out["loads"] = get_model_cache().total_loads
    except InsufficientMemoryError as exc:
        out.update(error=str(exc), need=exc.need, available=exc.available)
    out["rss_growth"] = memory_snapshot().rss - snap.rss
    print(json.dumps(out))
    """
)


def _estimate(use_mmap: bool) -> int:
    from langchain_setraf import GGUFLLM
    from langchain_setraf.models import default_gguf_path

    llm = GGUFLLM(model_path=str(default_gguf_path()), n_ctx=512, use_mmap=use_mmap)
    backend, spec = llm._backend_and_spec()
    return int(backend.estimate_bytes(spec))


def _run_child(group: MemGroup, use_mmap: bool) -> dict[str, object]:
    from langchain_setraf.models import default_gguf_path

    env = {k: v for k, v in os.environ.items() if k != "SETRAF_CGROUP_BUDGET"}
    env.pop("SETRAF_MAX_MEMORY", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(group.procs),
            str(default_gguf_path()),
            str(int(use_mmap)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, f"child exit {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
@needs_cgroup
@pytest.mark.parametrize("use_mmap", [False, True])
def test_refused_in_a_cgroup_below_the_estimate(mem_group: MemGroup, use_mmap: bool) -> None:
    estimate = _estimate(use_mmap)
    limit = estimate // 2 // PAGE * PAGE  # the kernel rounds limits down to pages
    mem_group.set_limit(limit)
    out = _run_child(mem_group, use_mmap)
    assert out["limit"] == limit  # memory_snapshot() sees the group's limit
    assert "error" in out, f"loaded under a {limit} B limit: {out}"
    assert out["need"] == estimate and int(out["available"]) <= limit  # type: ignore[call-overload]
    assert f"cgroup {mem_group.path} has" in str(out["error"])
    # refused before allocating: the group never hit its limit, nothing was OOM-killed
    assert mem_group.oom_events() == 0
    peak = mem_group.peak()
    assert peak is None or peak < limit


@pytest.mark.slow
@needs_cgroup
@pytest.mark.parametrize("use_mmap", [False, True])
def test_loads_in_a_cgroup_that_fits(mem_group: MemGroup, use_mmap: bool) -> None:
    estimate = _estimate(use_mmap)
    limit = (estimate * 2 + (128 << 20)) // PAGE * PAGE
    mem_group.set_limit(limit)
    out = _run_child(mem_group, use_mmap)
    assert "error" not in out, out["error"]
    assert out["loads"] == 1 and isinstance(out["text"], str) and out["text"]
    assert out["limit"] == limit
    assert mem_group.oom_events() == 0


FIT_CHILD = textwrap.dedent(
    """
    import json, os, re, sys, warnings
    import llama_cpp  # imported before joining the group: its charge stays outside
    from langchain_setraf import ContextDoesNotFitError, GGUFLLM
    from langchain_setraf.cache import InsufficientMemoryError, get_model_cache

    procs, mode = sys.argv[1], sys.argv[2]
    extra = json.loads(sys.argv[3])
    options = {"n_ctx": 8192, "max_tokens": 4, "temperature": 0, "n_threads": 2, **extra}
    llm = GGUFLLM(fit=(mode == "fit"), **options)
    with open(procs, "w") as fh:
        fh.write(str(os.getpid()))
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out["text"] = llm.invoke("The resistivity of clay")
            out["loaded"] = [m.options for m in get_model_cache().loaded()]
        except ContextDoesNotFitError as exc:
            out.update(error=str(exc), suggestion=exc.suggestion)
        except InsufficientMemoryError as exc:
            out.update(error=str(exc))
    out["warnings"] = [str(w.message) for w in caught]
    print(json.dumps(out))
    """
)


def _fit_child(group: MemGroup, mode: str, extra: dict[str, object]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "SETRAF_CGROUP_BUDGET"}
    env.pop("SETRAF_MAX_MEMORY", None)
    proc = subprocess.run(
        [sys.executable, "-c", FIT_CHILD, str(group.procs), mode, json.dumps(extra)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, f"child exit {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
@needs_cgroup
def test_a_context_that_does_not_fit_a_cgroup_is_fitted_or_named(mem_group: MemGroup) -> None:
    """Issue 23: a cgroup holds the weights and a 2k f16 context but not the asked 8k.
    Without ``fit`` the refusal names a configuration, which then loads; with ``fit=True``
    the model loads the best fitting one, warns, and answers. Nothing is OOM-killed."""
    from langchain_setraf import GGUFLLM

    two_k = GGUFLLM(n_ctx=2048).estimate_memory()
    eight_k = GGUFLLM(n_ctx=8192).estimate_memory()
    limit = (two_k + (64 << 20)) // PAGE * PAGE
    assert limit < eight_k
    mem_group.set_limit(limit)

    refused = _fit_child(mem_group, "plain", {})
    assert "suggestion" in refused, refused
    found = re.search(r"n_ctx=(\d+) with type_k=(\w+), type_v=(\w+)", refused["suggestion"])
    assert found is not None and 2048 <= int(found.group(1)) <= 8192
    assert "fit=True" in refused["error"]
    named = {"n_ctx": int(found.group(1)), "type_k": found.group(2), "type_v": found.group(3)}
    then = _fit_child(mem_group, "plain", named)  # the named configuration loads
    assert then.get("text"), then

    fitted = _fit_child(mem_group, "fit", {})
    assert fitted.get("text"), fitted
    assert any("fit=True" in w and "loading n_ctx=" in w for w in fitted["warnings"])
    (options,) = fitted["loaded"]
    assert 2048 <= options["n_ctx"] <= 8192
    assert mem_group.oom_events() == 0
