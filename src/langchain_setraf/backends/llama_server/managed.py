"""One llama.cpp server per host per model and load options, shared by every process.

A :class:`ManagedServer` is named by a hash of its
:class:`~langchain_setraf.backends.base.LoadSpec`. Its files live in the runtime
directory, private to the user (:func:`runtime_dir`: ``$SETRAF_RUNTIME_DIR``, else
``$XDG_RUNTIME_DIR/langchain-setraf``, else ``~/.cache/langchain-setraf/run``; a directory
another user could change is refused with
:class:`~langchain_setraf.backends.llama_server.private_files.InsecureRuntimeDirError`;
sharing servers with a group is an explicit setgid directory, see
:mod:`~langchain_setraf.backends.llama_server.private_files`):

- ``<key>.lock``: an ``fcntl`` lock held while a process changes the state (it names
  the holder, for the error of a process that waited too long);
- ``<key>.json``: the state (pids and start times of the server and its supervisor, port,
  engine, spec, attached client processes, and the server's API key), replaced
  atomically, so readers need no lock;
- ``<key>.log``: the server's output (truncated at each start; rotated to ``<key>.log.1``
  at ``$SETRAF_SERVER_LOG_MAX_BYTES``, default 1 MiB, so both hold at most twice that);
- ``<key>.<launch>.exit``: how a server ended, written by its
  :mod:`~langchain_setraf.backends.llama_server.supervisor`;
- ``<key>.<launch>.watch``: since when a server has had no live client, and when it
  sleeps and exits (written by the supervisor while it has none).

The first process starts the server on a free port of 127.0.0.1 with a new random API key
(given to the server in a private file, never on its command line) and waits for
``/health`` with a deadline; later processes attach after a health check, and every
request carries the key as ``Authorization: Bearer``. The server grants no CORS
origin. Stale state (a dead or reused
pid, a port now answered by something else) is replaced by a new server; a corrupt state
file is replaced with a warning. A server is stopped by :meth:`ManagedServer.stop`, when the
last attached process detaches, or by its supervisor once no attached process is alive
(they exited or were killed without detaching): it unloads its weights after
``keep_alive`` idle seconds (the spec's ``sleep_idle_seconds``, default
:data:`DEFAULT_KEEP_ALIVE`, Ollama's 5 minutes) and exits ``$SETRAF_SERVER_EXIT_GRACE``
seconds later (default
:data:`~langchain_setraf.backends.llama_server.supervisor.DEFAULT_EXIT_GRACE`).
Only a process this package started is signalled (verified by pid, start time, owner and
the exact command line recorded at its start); a stop that cannot signal keeps the state
and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psutil

from langchain_setraf.backends.base import LoadSpec
from langchain_setraf.backends.llama_server.engine import (
    Engine,
    ServerArgs,
    resolve_engine,
    server_argv,
)
from langchain_setraf.backends.llama_server.private_files import (
    InsecureRuntimeDirError,
    RuntimeDir,
    check_runtime_dir,
    open_runtime_file,
    read_runtime_file,
    resolve_runtime_dir,
    write_runtime_file,
)
from langchain_setraf.backends.llama_server.server_memory import (
    DEFAULT_CTX_CHECKPOINTS,
    default_cache_ram_mib,
    read_allocated,
    server_memory_split,
)
from langchain_setraf.backends.llama_server.supervisor import (
    describe_exit,
    read_exit,
)
from langchain_setraf.backends.options import (
    DEFAULT_KEEP_ALIVE,
    LlamaServerEmbeddingOptions,
    LlamaServerOptions,
)
from langchain_setraf.memory import MemorySplit
from langchain_setraf.settings import Settings, get_settings

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "DEFAULT_N_CTX",
    "DEFAULT_N_PARALLEL",
    "STATUS_LOCK_WAIT",
    "InsecureRuntimeDirError",
    "LockBusyError",
    "ManagedServer",
    "ServerInfo",
    "ServerStartError",
    "ServerStatus",
    "running_servers",
    "runtime_dir",
    "server_options",
]

#: Context tokens per slot by default (``LlamaServerOptions.n_ctx``).
DEFAULT_N_CTX: Final = LlamaServerOptions.n_ctx
#: Slots by default (``LlamaServerOptions.n_parallel``).
DEFAULT_N_PARALLEL: Final = LlamaServerOptions.n_parallel
#: Environment variable: seconds a server with no live client stays up after its
#: ``keep_alive`` before its supervisor stops it (default ``DEFAULT_EXIT_GRACE``).
EXIT_GRACE_ENV: Final = "SETRAF_SERVER_EXIT_GRACE"
#: Environment variable: bytes a server's log may reach before it is rotated (default
#: ``LOG_MAX_BYTES``, 1 MiB; at least 4096).
LOG_MAX_BYTES_ENV: Final = "SETRAF_SERVER_LOG_MAX_BYTES"
#: Seconds a new server may take to answer ``/health`` (``$SETRAF_SERVER_START_TIMEOUT``).
DEFAULT_START_TIMEOUT: Final = Settings.server_start_timeout
#: Seconds a stop waits for the server to exit before killing it.
STOP_TIMEOUT: Final = 15.0
#: Health checks of a live server that does not answer before it is deemed hung.
PROBE_ATTEMPTS: Final = 3
#: Seconds each of those checks waits.
PROBE_TIMEOUT: Final = 10.0
#: Starts tried when the chosen port turns out to be taken.
PORT_ATTEMPTS: Final = 3
#: Seconds ``status``/``is_running`` wait for a held lock before reporting the server busy.
STATUS_LOCK_WAIT: Final = 0.5
#: Seconds a stop, a detach or an attach waits for another process's stop to finish.
SHORT_LOCK_WAIT: Final = STOP_TIMEOUT + 15.0
#: Seconds an old server's exit record is kept for clients that still need to name it.
EXIT_RECORD_SECONDS: Final = 600.0
#: Lines of the server's log quoted when it fails to start.
LOG_TAIL_LINES: Final = 20
_STATE_VERSION: Final = 1
_SUPERVISOR_MODULE: Final = "langchain_setraf.backends.llama_server.supervisor"
#: Module names a supervisor of ours may run under: a server started before the module
#: moved out of ``serve/`` (0.2.0 and earlier) is still recognised, and stopped, as ours.
_SUPERVISOR_MODULES: Final = (_SUPERVISOR_MODULE, "langchain_setraf.serve.supervisor")
_BIND_ERRORS: Final = ("couldn't bind", "address already in use", "failed to bind")


#: Attachments this process holds, per (pid, server key): a process is one client however
#: many handles it opens, and it detaches when its last handle closes.
_LOCAL_REFS: dict[tuple[int, str], int] = {}
_LOCAL_LOCK = threading.Lock()


class ServerStartError(RuntimeError):
    """A managed server could not be started (names the model, engine and log tail)."""


@dataclass(frozen=True)
class ServerInfo:
    """A running managed server.

    Attributes:
        url: Its root URL, ``http://127.0.0.1:PORT`` (the OpenAI API is under ``/v1``).
        pid: The server process's id.
        port: Its TCP port on 127.0.0.1.
        engine: ``"xllamacpp"`` or ``"llama-server"``.
        model_path: The GGUF file it serves.
        alias: The model name it reports in ``/v1/models``.
        n_parallel: Its slots.
        key: The spec hash naming its runtime files.
        launch_id: Unique id of this start (a restart gets a new one).
        api_key: The server's API key, sent as ``Authorization: Bearer`` (never shown
            in a repr; ``None`` for a state written before servers had keys).
    """

    url: str
    pid: int
    port: int
    engine: str
    model_path: str
    alias: str
    n_parallel: int
    key: str
    launch_id: str
    api_key: str | None = field(default=None, repr=False, compare=False)


@dataclass
class ServerStatus:
    """What ``setraf server status`` shows for one server.

    Attributes:
        key: The spec hash.
        spec: The spec in words.
        running: Whether the server process is alive (same pid and start time).
        healthy: Whether ``/health`` answered 200.
        sleeping: Whether it has unloaded its weights after an idle period (``None``: unknown).
        info: The server, when its state is readable.
        clients: Live attached client pids.
        rss: Resident memory of the server and its supervisor (bytes).
        pss: Proportional set size of both (``None`` if unreadable).
        last_exit: How the previous server of this spec ended, when known.
        busy: Who held the server's lock for more than :data:`STATUS_LOCK_WAIT` seconds
            (starting or stopping it); ``None``: nobody. The rest is the last state
            written, read without the lock.
        idle_since: Since when it has had no live client (epoch seconds; ``None``: it has
            one, or its supervisor has not looked yet).
        sleeps_by: When it unloads its weights at the latest, if no client attaches.
        exits_at: When its supervisor stops it, if no client attaches.
        memory: Its memory at most, split (weights / KV cache / prompt cache at its cap /
            other), as estimated when it started (``None``: a state written before).
        allocated: The host buffers its llama.cpp reported in its log (``None``: none).
    """

    key: str
    spec: str
    running: bool
    healthy: bool = False
    sleeping: bool | None = None
    info: ServerInfo | None = None
    clients: list[int] = field(default_factory=list)
    rss: int = 0
    pss: int | None = None
    last_exit: str | None = None
    busy: str | None = None
    idle_since: float | None = None
    sleeps_by: float | None = None
    exits_at: float | None = None
    memory: MemorySplit | None = None
    allocated: MemorySplit | None = None

    def why_up(self) -> str:
        """Why the server is still running, in words (``""`` when it is not): ``2 live
        clients``; ``no client since 14:02:07, sleeps by 14:07:07, exits at 14:08:07``
        (``sleeps by`` left out once it sleeps, see :attr:`sleeping`)."""
        if not self.running:
            return ""
        if self.clients:
            n = len(self.clients)
            return f"{n} live client{'s' if n != 1 else ''}"
        if self.idle_since is None:
            return "no live client"
        parts = [f"no client since {_clock(self.idle_since)}"]
        if not self.sleeping and self.sleeps_by is not None:
            parts.append(f"sleeps by {_clock(self.sleeps_by)}")
        if self.exits_at is not None:
            parts.append(f"exits at {_clock(self.exits_at)}")
        return ", ".join(parts)


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def log_max_bytes() -> int:
    """The log rotation bound (``$SETRAF_SERVER_LOG_MAX_BYTES``, default 1 MiB).

    Raises:
        SettingsError: The variable is not an integer >= 4096.
    """
    return get_settings().server_log_max_bytes


def runtime_dir() -> Path:
    """The runtime directory, created ``0700`` when missing, checked to be the user's own.

    ``$SETRAF_RUNTIME_DIR`` when set (it may be a shared setgid group directory); else
    ``$XDG_RUNTIME_DIR/langchain-setraf`` when ``$XDG_RUNTIME_DIR`` is the user's; else
    ``$XDG_CACHE_HOME/langchain-setraf/run`` (``~/.cache/langchain-setraf/run``).

    Raises:
        InsecureRuntimeDirError: The directory is a symbolic link, is not owned by the
            user, or is writable by other users (the message names path, owner, mode and
            the fix).
    """
    path, explicit = resolve_runtime_dir()
    return check_runtime_dir(path, allow_shared=explicit).path


def _checked(directory: Path | None) -> RuntimeDir:
    """``directory`` (default: :func:`runtime_dir`'s), created and checked."""
    if directory is None:
        path, explicit = resolve_runtime_dir()
        return check_runtime_dir(path, allow_shared=explicit)
    return check_runtime_dir(directory, allow_shared=True)


def _load_json(runtime: RuntimeDir, path: Path) -> Any:
    """The JSON in a runtime file (``None``: missing, empty or not JSON)."""
    try:
        data = read_runtime_file(runtime, path)
        return json.loads(data) if data and data.strip() else None
    except InsecureRuntimeDirError:
        raise
    except (OSError, ValueError):
        return None


def server_options(spec: LoadSpec) -> LlamaServerOptions:
    """The spec's server options.

    Raises:
        TypeError: the spec carries another backend's options.
    """
    if not isinstance(spec.options, LlamaServerOptions):
        raise TypeError(
            f"{spec.describe()}: expected llama-server options, got {type(spec.options).__name__}"
        )
    return spec.options


def spec_key(spec: LoadSpec) -> str:
    """Stable hash of a spec: names its runtime files (same file and server options ->
    same server; the client's own options, such as ``request_timeout``, are left out)."""
    options = sorted(server_options(spec).server_key().items())
    text = json.dumps([spec.backend, list(spec.identity), options], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def process_start(pid: int) -> float | None:
    """Start time of a live process (``None``: no such process, or a zombie)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def same_process(pid: object, start: object) -> bool:
    """Whether ``pid`` is alive and is the process that started at ``start`` (not a reuse)."""
    if not isinstance(pid, int) or not isinstance(start, int | float) or pid <= 0:
        return False
    now = process_start(pid)
    return now is not None and abs(now - float(start)) < 0.05


def _cmdline(pid: int) -> list[str]:
    try:
        return list(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _option(argv: list[Any], flag: str) -> object:
    """The value after ``flag`` in ``argv`` (before ``--``); ``None`` when absent."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return head[head.index(flag) + 1] if flag in head[:-1] else None


def _owned_by_me(pid: int) -> bool:
    try:
        return int(psutil.Process(pid).uids().real) == os.getuid()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` listens on 127.0.0.1:``port`` (``True`` when its sockets are
    not readable: another user's server in a shared runtime directory)."""
    try:
        proc = psutil.Process(pid)
        conns = proc.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return True
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Requests to 127.0.0.1 never go through an ``http_proxy`` from the environment.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_json(url: str, timeout: float, api_key: str | None = None) -> tuple[int, Any]:
    """GET ``url`` (with ``api_key`` as a Bearer token): (status, parsed JSON or None).
    Status 0: no HTTP answer."""
    request = urllib.request.Request(url)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            body = resp.read(1 << 20)
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


class LockBusyError(TimeoutError):
    """Another process held a server's lock longer than the caller would wait.

    Attributes:
        holder: Who holds it, in words (pid and command line when known).
    """

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


def _lock_holder(fd: int) -> str:
    """Who holds the lock of ``fd``, from what the holder wrote into the lock file."""
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
        pid_text, start_text = text.split()[:2]
        pid, start = int(pid_text), float(start_text)
    except (OSError, ValueError):
        return "an unknown process"
    if not same_process(pid, start):
        return f"pid {pid} (exited)"
    command = " ".join(_cmdline(pid))[:200]
    return f"pid {pid} ({command})" if command else f"pid {pid}"


@contextlib.contextmanager
def _locked(runtime: RuntimeDir, path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path``, waiting at most ``timeout`` seconds.

    Raises:
        LockBusyError: Still held after ``timeout`` seconds (names the holder).
    """
    fd = open_runtime_file(runtime, path, os.O_RDWR)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = _lock_holder(fd)
                    raise LockBusyError(
                        f"{path}: {holder} has held the server lock for more than "
                        f"{timeout:.0f} s (starting or stopping the server); try again, or "
                        "stop that process",
                        holder,
                    ) from None
                time.sleep(0.05)
        with contextlib.suppress(OSError):  # name the holder for processes that wait
            me = f"{os.getpid()} {process_start(os.getpid()) or 0.0}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, me, 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _lock_busy(runtime: RuntimeDir, path: Path, wait: float) -> str | None:
    """Who holds ``path``'s lock after ``wait`` seconds (``None``: nobody, or no lock file)."""
    try:
        with _locked(runtime, path, wait):
            return None
    except FileNotFoundError:
        return None
    except LockBusyError as exc:
        return exc.holder


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(the log is empty)"


class ManagedServer:
    """The host's one server for a spec: start it, attach to it, detach, stop it.

    Every method takes the spec's file lock, so concurrent processes (and threads) see one
    consistent state. Typical use (what the ``llama-server`` backend does)::

        server = ManagedServer.for_spec(spec)
        info = server.attach()  # start or reuse; this process is now a client
        ...                     # requests to info.url
        server.detach()         # stops it if this package started it and no one else is attached
    """

    def __init__(self, spec: LoadSpec, directory: Path | None = None) -> None:
        """Bind to ``spec``'s server in ``directory`` (default: :func:`runtime_dir`).

        Raises:
            InsecureRuntimeDirError: Another user could change the directory's content.
        """
        self.spec = spec
        self.key = spec_key(spec)
        self.runtime = _checked(directory)
        self.directory = self.runtime.path
        self.lock_path = self.directory / f"{self.key}.lock"
        self.state_path = self.directory / f"{self.key}.json"
        self.log_path = self.directory / f"{self.key}.log"

    @classmethod
    def for_spec(cls, spec: LoadSpec) -> ManagedServer:
        """The managed server of ``spec`` in the runtime directory."""
        return cls(spec)

    @classmethod
    def for_key(cls, key: str, directory: Path | None = None) -> ManagedServer:
        """The server recorded under ``key`` (for ``status``/``stop``/``sleep`` only: it
        cannot start one).

        Raises:
            LookupError: No state file has that key.
        """
        runtime = _checked(directory)
        if not key or "/" in key or key.startswith("."):
            raise LookupError(f"no managed server {key!r} in {runtime.path}")
        state = _load_json(runtime, runtime.path / f"{key}.json")
        if not isinstance(state, dict) or "model_path" not in state:
            raise LookupError(f"no managed server {key!r} in {runtime.path}")
        spec = LoadSpec("llama-server", (str(state["model_path"]),), LlamaServerOptions())
        server = cls(spec, runtime.path)
        server._set_key(key)
        return server

    def _set_key(self, key: str) -> None:
        self.key = key
        self.lock_path = self.directory / f"{key}.lock"
        self.state_path = self.directory / f"{key}.json"
        self.log_path = self.directory / f"{key}.log"

    # -- options --------------------------------------------------------------------------

    def server_args(self, port: int) -> ServerArgs:
        """The llama-server arguments for this spec on ``port``."""
        from langchain_setraf.backends.gguf.file import read_gguf_header_cached
        from langchain_setraf.cpu import physical_cores

        opts = server_options(self.spec)
        common = ServerArgs(
            model_path=self.spec.path,
            port=port,
            n_ctx=opts.n_ctx,
            n_parallel=opts.n_parallel,
            n_threads=opts.n_threads or physical_cores(),
            n_batch=opts.n_batch,
            n_gpu_layers=opts.n_gpu_layers,
            use_mmap=opts.use_mmap,
            use_mlock=opts.use_mlock,
            repack=opts.repack,
            sleep_idle_seconds=opts.sleep_idle_seconds,
            flash_attn=opts.flash_attn,
            alias=Path(self.spec.path).stem,
        )
        if isinstance(opts, LlamaServerEmbeddingOptions):
            # an encoder evaluates each text in one physical batch: -ub = -b = a slot
            return dataclasses.replace(
                common,
                n_ubatch=opts.n_batch,
                cache_ram_mib=opts.cache_ram_mib or 0,
                embedding=True,
                pooling=opts.pooling,
            )
        cache_ram = opts.cache_ram_mib
        if cache_ram is None:
            info = read_gguf_header_cached(self.spec.path)
            cache_ram = default_cache_ram_mib(
                info, opts.n_ctx, type_k=opts.type_k, type_v=opts.type_v
            )
        return dataclasses.replace(
            common,
            cache_ram_mib=int(cache_ram),
            type_k=opts.type_k,
            type_v=opts.type_v,
            ctx_checkpoints=DEFAULT_CTX_CHECKPOINTS,
        )

    # -- state ----------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any] | None:
        """The state, or ``None`` (missing, or corrupt: warned about and discarded).

        Raises:
            InsecureRuntimeDirError: The state file is a link or another user's file.
        """
        try:
            data = read_runtime_file(self.runtime, self.state_path)
        except InsecureRuntimeDirError:
            raise
        except OSError as exc:
            warnings.warn(f"{self.state_path}: unreadable server state ({exc})", stacklevel=3)
            return None
        if data is None or not data.strip():
            return None
        try:
            state = json.loads(data)
            if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
                raise ValueError("not a langchain-setraf server state")
            int(state["port"]), int(state["server_pid"]), str(state["launch_id"])
        except (ValueError, KeyError, TypeError) as exc:
            warnings.warn(
                f"{self.state_path}: corrupt server state file ({exc}); it is replaced "
                "(a server it described, if any, is left alone)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return state

    def _write_state(self, state: dict[str, Any] | None) -> None:
        """Replace the state atomically (readers see the old or the new one, whole);
        ``None`` empties it."""
        data = b"" if state is None else json.dumps(state, indent=1).encode()
        write_runtime_file(self.runtime, self.state_path, data)

    def _exit_path(self, launch_id: str) -> Path:
        return self.directory / f"{self.key}.{launch_id}.exit"

    def _watch_path(self, launch_id: str) -> Path:
        return self.directory / f"{self.key}.{launch_id}.watch"

    @staticmethod
    def _info(state: dict[str, Any]) -> ServerInfo:
        return ServerInfo(
            url=f"http://127.0.0.1:{state['port']}",
            pid=int(state["server_pid"]),
            port=int(state["port"]),
            engine=str(state.get("engine", "?")),
            model_path=str(state.get("model_path", "")),
            alias=str(state.get("alias", "")),
            n_parallel=int(state.get("n_parallel", 0)),
            key=str(state.get("key", "")),
            launch_id=str(state["launch_id"]),
            api_key=state.get("api_key") if isinstance(state.get("api_key"), str) else None,
        )

    @staticmethod
    def _server_alive(state: dict[str, Any]) -> bool:
        return same_process(state.get("server_pid"), state.get("server_start"))

    def _answers_for_us(self, state: dict[str, Any], timeout: float = 10.0) -> bool:
        """Whether the state's port is listened on by the state's server process, answers
        ``/health`` with 200 and serves this model to the state's key."""
        if not _listens_on(int(state["server_pid"]), int(state["port"])):
            return False
        base = f"http://127.0.0.1:{state['port']}"
        status, _ = _http_json(base + "/health", timeout)
        if status != 200:
            return False
        status, props = _http_json(base + "/props", timeout, state.get("api_key"))
        return (
            status == 200
            and isinstance(props, dict)
            and props.get("model_path") == self.spec.path
            and props.get("total_slots") == state.get("n_parallel")
        )

    def _probe(self, state: dict[str, Any], start_timeout: float) -> bool:
        """Whether a live server of ours answers for this model.

        A server still starting (refusing connections, or 503 while it loads: its starter
        died mid-start) is waited for up to ``start_timeout``; one that does not answer at
        all is asked :data:`PROBE_ATTEMPTS` times (a busy server is slow, not gone); a
        wrong answer is final.
        """
        base = f"http://127.0.0.1:{state['port']}"
        silent = 0
        deadline = time.monotonic() + start_timeout
        while silent < PROBE_ATTEMPTS and self._server_alive(state):
            asked = time.monotonic()
            status, _ = _http_json(base + "/health", PROBE_TIMEOUT)
            # 503: loading; refused at once: not listening yet (both: still starting)
            starting = status == 503 or (status == 0 and time.monotonic() - asked < 1.0)
            if starting and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            if status != 0:
                return self._answers_for_us(state, PROBE_TIMEOUT)
            silent += 1
        return False

    # -- public API -----------------------------------------------------------------------

    def ensure(self, *, start_timeout: float | None = None) -> ServerInfo:
        """The running server for this spec, started now if there is none.

        Raises:
            ServerStartError: The server exited, or did not answer ``/health``, before the
                deadline (the message quotes the end of its log).
            EngineNotFoundError: No engine is installed (see
                :mod:`~langchain_setraf.backends.llama_server.engine`).
        """
        return self._ensure(None, start_timeout, count=False)

    def attach(
        self, pid: int | None = None, *, start_timeout: float | None = None, again: bool = False
    ) -> ServerInfo:
        """Like :meth:`ensure`, and record ``pid`` (default: this process) as a client.

        Each attach of this process must be matched by one :meth:`detach`; ``again=True``
        re-records an attachment already counted (a handle whose server was restarted).
        """
        return self._ensure(os.getpid() if pid is None else pid, start_timeout, count=not again)

    def detach(self, pid: int | None = None, *, stop_if_last: bool = True) -> bool:
        """Forget client ``pid`` (default: this process); stop the server when it was the
        last live client and this package started the server.

        Returns:
            Whether the server was stopped.
        """
        pid = os.getpid() if pid is None else pid
        if pid == os.getpid():
            with _LOCAL_LOCK:
                refs = _LOCAL_REFS.pop((pid, self.key), 0) - 1
                if refs > 0:  # another handle of this process still uses the server
                    _LOCAL_REFS[(pid, self.key)] = refs
                    return False
        with _locked(self.runtime, self.lock_path, self._lock_timeout(None)):
            state = self._read_state()
            if state is None:
                return False
            clients = [c for c in self._live_clients(state) if c["pid"] != pid]
            state["clients"] = clients
            if not self._server_alive(state):
                self._write_state(state)
                return False
            if stop_if_last and not clients and state.get("started_by_package"):
                return self._stop_locked(state)
            self._write_state(state)
            return False

    def stop(self) -> bool:
        """Stop the server (whoever is attached), if this package started it.

        Only a process whose pid, start time, owner and exact command line match the
        state this package wrote at its start is signalled.

        Returns:
            Whether a running server was stopped. ``False`` also when it runs but could
            not be signalled (not a process of ours): its state is kept.
        """
        with _locked(self.runtime, self.lock_path, self._lock_timeout(None)):
            state = self._read_state()
            if state is None or not self._server_alive(state):
                return False
            if not state.get("started_by_package"):
                return False
            return self._stop_locked(state)

    def sleep(self) -> str:
        """Free the model's memory if possible without disturbing other processes.

        llama.cpp's server unloads its weights by itself after ``sleep_idle_seconds`` idle
        (the spec's ``keep_alive``, :data:`DEFAULT_KEEP_ALIVE` when unset, so every server
        this version starts has an idle timer); it has no request that puts it to sleep at
        once.

        Returns:
            ``"not-running"``; ``"sleeping"`` (weights already unloaded); ``"idle-timer"``
            (it will unload after its idle period); ``"stopped"`` (no idle timer and no
            other client: stopped); ``"in-use"`` (no idle timer, other clients attached);
            ``"not-ours"`` (it could not be signalled: not a process of ours).
        """
        status = self.status()
        if not status.running or status.info is None:
            return "not-running"
        if status.sleeping:
            return "sleeping"
        state = self._read_state()
        if state is not None and "--sleep-idle-seconds" in (state.get("argv") or ()):
            return "idle-timer"
        if [p for p in status.clients if p != os.getpid()]:
            return "in-use"
        if self.stop():
            return "stopped"
        return "not-ours" if self.is_running() else "not-running"

    def status(self) -> ServerStatus:
        """The server's state, health, clients and memory (does not start anything).

        Waits at most :data:`STATUS_LOCK_WAIT` seconds for a held lock: the state is
        replaced atomically, so it is read without the lock, and the holder is reported
        in :attr:`ServerStatus.busy`.
        """
        busy = _lock_busy(self.runtime, self.lock_path, STATUS_LOCK_WAIT)
        status = _status_of(self.key, self._read_state(), self.directory)
        status.busy = busy
        return status

    def exit_record(self, launch_id: str, wait: float = 2.0) -> dict[str, Any] | None:
        """The supervisor's record of how launch ``launch_id`` ended, waiting up to ``wait``
        seconds for it (``None``: no record)."""
        path = self._exit_path(launch_id)
        deadline = time.monotonic() + wait
        record = read_exit(path)
        while record is None and time.monotonic() < deadline:
            time.sleep(0.05)
            record = read_exit(path)
        return record

    def exit_description(self, launch_id: str, wait: float = 2.0) -> str:
        """How launch ``launch_id`` ended, in words (see :meth:`exit_record`)."""
        return describe_exit(self.exit_record(launch_id, wait))

    def is_running(self) -> bool:
        """Whether the spec's server process is alive (no request is made, no lock taken)."""
        state = self._read_state()
        return state is not None and self._server_alive(state)

    def is_current(self, info: ServerInfo) -> bool:
        """Whether ``info``'s server is still alive (same process, not a restart)."""
        state = self._read_state()
        return (
            state is not None
            and state.get("launch_id") == info.launch_id
            and self._server_alive(state)
        )

    def memory(self) -> tuple[int, int | None]:
        """(RSS, PSS) in bytes of the server and its supervisor; (0, None) when not running."""
        status = self.status()
        return status.rss, status.pss

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _start_timeout(start_timeout: float | None) -> float:
        if start_timeout is not None:
            return start_timeout
        return get_settings().server_start_timeout

    def _lock_timeout(self, start_timeout: float | None) -> float:
        # a holder may be starting a server (a port retry fails at once: one start counts)
        # or stopping one; past that, the error names the holder
        return self._start_timeout(start_timeout) + STOP_TIMEOUT + 30.0

    @staticmethod
    def _live_clients(state: dict[str, Any]) -> list[dict[str, Any]]:
        clients = state.get("clients")
        if not isinstance(clients, list):
            return []
        return [
            c for c in clients if isinstance(c, dict) and same_process(c.get("pid"), c.get("start"))
        ]

    def _ensure(
        self, client: int | None, start_timeout: float | None, *, count: bool
    ) -> ServerInfo:
        timeout = self._start_timeout(start_timeout)
        with _locked(self.runtime, self.lock_path, self._lock_timeout(start_timeout)):
            state = self._read_state()
            clients = [] if state is None else self._live_clients(state)
            if state is not None and self._server_alive(state):
                if self._probe(state, timeout):
                    info = self._info(state)
                    self._add_client(state, clients, client, count)
                    return info
                warnings.warn(
                    f"managed server pid {state['server_pid']} on port {state['port']} for "
                    f"{self.spec.path} does not answer as expected: restarting it",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._stop_locked(state)
            state = self._start_locked(timeout, clients)
            self._add_client(state, clients, client, count)
            return self._info(state)

    def _add_client(
        self, state: dict[str, Any], clients: list[dict[str, Any]], pid: int | None, count: bool
    ) -> None:
        if pid == os.getpid() and count:
            with _LOCAL_LOCK:
                _LOCAL_REFS[(pid, self.key)] = _LOCAL_REFS.get((pid, self.key), 0) + 1
        if pid is not None and all(c["pid"] != pid for c in clients):
            start = process_start(pid)
            if start is None:
                raise ProcessLookupError(f"cannot attach client pid {pid}: no such process")
            clients.append({"pid": pid, "start": start})
        state["clients"] = clients
        self._write_state(state)

    def _start_locked(self, timeout: float, clients: list[dict[str, Any]]) -> dict[str, Any]:
        from langchain_setraf.backends.gguf.file import read_gguf_header

        read_gguf_header(self.spec.path)  # a bad file fails here, named, not in the server
        engine = resolve_engine()
        for stale in self.directory.glob(f"{self.key}.*.exit"):
            with contextlib.suppress(OSError):  # kept a while for clients still reading them
                if time.time() - stale.stat().st_mtime > EXIT_RECORD_SECONDS:
                    stale.unlink()
        for stale in self.directory.glob(f"{self.key}.*.key"):
            with contextlib.suppress(OSError):  # a starter killed mid-start left its key file
                stale.unlink()  # (no other start can be under way: we hold the lock)
        for stale in self.directory.glob(f"{self.key}.*.watch"):
            with contextlib.suppress(OSError):  # left by a supervisor that was killed
                stale.unlink()
        last_error: ServerStartError | None = None
        for _ in range(PORT_ATTEMPTS):
            try:
                return self._launch(engine, free_port(), timeout, clients)
            except _PortTakenError as exc:
                last_error = ServerStartError(str(exc))
        assert last_error is not None
        raise last_error

    def _launch(
        self, engine: Engine, port: int, timeout: float, clients: list[dict[str, Any]]
    ) -> dict[str, Any]:
        launch_id = uuid.uuid4().hex[:12]
        # the server reads its API key from a private file, removed once it is up: a
        # command line is readable by every user of the host
        key_path = self.directory / f"{self.key}.{launch_id}.key"
        api_key = secrets.token_urlsafe(32)
        key_fd = open_runtime_file(self.runtime, key_path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(key_fd, f"{api_key}\n".encode())
        finally:
            os.close(key_fd)
        try:
            return self._launch_with_key(engine, port, timeout, clients, launch_id, api_key)
        finally:
            with contextlib.suppress(OSError):
                key_path.unlink()

    def _launch_with_key(
        self,
        engine: Engine,
        port: int,
        timeout: float,
        clients: list[dict[str, Any]],
        launch_id: str,
        api_key: str,
    ) -> dict[str, Any]:
        key_path = self.directory / f"{self.key}.{launch_id}.key"
        args = dataclasses.replace(self.server_args(port), api_key_file=str(key_path))
        argv = server_argv(engine, args)
        exit_path = self._exit_path(launch_id)
        keep_alive = args.sleep_idle_seconds or DEFAULT_KEEP_ALIVE
        grace = get_settings().server_exit_grace
        max_log = log_max_bytes()
        supervisor_argv = [
            sys.executable,
            "-m",
            _SUPERVISOR_MODULE,
            "--log",
            str(self.log_path),
            "--log-max-bytes",
            str(max_log),
            "--exit-file",
            str(exit_path),
            "--state",
            str(self.state_path),
            "--lock",
            str(self.lock_path),
            "--launch-id",
            launch_id,
            "--port",
            str(port),
            "--keep-alive",
            str(keep_alive),
            "--exit-grace",
            str(grace),
            "--watch-file",
            str(self._watch_path(launch_id)),
            "--",
            *argv,
        ]
        log_fd = open_runtime_file(self.runtime, self.log_path, os.O_WRONLY | os.O_APPEND)
        os.ftruncate(log_fd, 0)
        os.write(log_fd, f"# {engine.describe()}: {' '.join(argv)}\n".encode())
        try:
            proc = subprocess.Popen(
                supervisor_argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_fd,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(log_fd)
        try:
            pids = _read_pids(proc, deadline=time.monotonic() + 30.0)
        finally:
            assert proc.stdout is not None
            proc.stdout.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10.0)  # the intermediate parent exits at once
        if pids is None or not isinstance(pids.get("server_pid"), int):
            raise ServerStartError(
                f"{engine.describe()} for {self.spec.path}: the supervisor did not start "
                f"the server; last lines of {self.log_path}:\n{_log_tail(self.log_path)}"
            )
        server_pid = int(pids["server_pid"])
        supervisor_pid = int(pids["supervisor_pid"])
        from langchain_setraf.backends.gguf.file import read_gguf_header_cached

        memory = server_memory_split(
            read_gguf_header_cached(self.spec.path), server_options(self.spec)
        )
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "key": self.key,
            "spec": self.spec.describe(),
            "model_path": self.spec.path,
            "alias": args.alias,
            "n_parallel": args.n_parallel,
            "engine": engine.name,
            "argv": argv,
            "supervisor_argv": supervisor_argv,
            "api_key": api_key,
            "launch_id": launch_id,
            "port": port,
            "server_pid": server_pid,
            "server_start": process_start(server_pid) or 0.0,
            "supervisor_pid": supervisor_pid,
            "supervisor_start": process_start(supervisor_pid) or 0.0,
            "started_by_package": True,
            "started_by": {"pid": os.getpid(), "uid": os.getuid()},
            "started_at": time.time(),
            "clients": clients,
            "memory": memory.as_dict(),
        }
        self._write_state(state)
        self._wait_healthy(state, engine, timeout)
        return state

    def _wait_healthy(self, state: dict[str, Any], engine: Engine, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        base = f"http://127.0.0.1:{state['port']}"
        what = f"{engine.describe()} for {self.spec.path} (pid {state['server_pid']})"
        while True:
            if not self._server_alive(state):
                how = self.exit_description(state["launch_id"])
                tail = _log_tail(self.log_path)
                self._write_state(None)
                message = (
                    f"{what} exited before it was ready ({how}); last lines of "
                    f"{self.log_path}:\n{tail}"
                )
                if any(marker in tail.lower() for marker in _BIND_ERRORS):
                    raise _PortTakenError(message)
                raise ServerStartError(message)
            status, _ = _http_json(base + "/health", timeout=5.0)
            if status == 200:
                if self._answers_for_us(state):
                    return
                self._stop_locked(state)
                raise _PortTakenError(f"{what}: port {state['port']} answers for another server")
            if time.monotonic() > deadline:
                self._stop_locked(state)
                raise ServerStartError(
                    f"{what} did not answer {base}/health with 200 within {timeout:.0f} s; "
                    f"last lines of {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def _signal_targets(self, state: dict[str, Any]) -> tuple[int | None, int | None]:
        """(supervisor pid, server pid) of the state, each ``None`` unless it is a live
        process of this user whose command line is exactly the one this package started
        (a wrapper script may exec another program: the server's flags must match)."""
        argv = state.get("argv")
        if (
            not isinstance(argv, list)
            or "-m" not in argv
            or not all(isinstance(a, str) for a in argv)
        ):
            return None, None
        flags = argv[argv.index("-m") :]
        server_pid = state.get("server_pid")
        server = None
        if (
            isinstance(server_pid, int)
            and self._server_alive(state)
            and _owned_by_me(server_pid)
            and _cmdline(server_pid)[-len(flags) :] == flags
        ):
            server = server_pid
        sup_pid = state.get("supervisor_pid")
        sup_argv = state.get("supervisor_argv")
        supervisor = None
        if (
            isinstance(sup_pid, int)
            and isinstance(sup_argv, list)
            and len(sup_argv) > 2
            and sup_argv[1] == "-m"
            and sup_argv[2] in _SUPERVISOR_MODULES
            and _option(sup_argv, "--log") == str(self.log_path)
            and sup_argv[-len(argv) :] == argv
            and same_process(sup_pid, state.get("supervisor_start"))
            and _owned_by_me(sup_pid)
            and _cmdline(sup_pid) == sup_argv
        ):
            supervisor = sup_pid
        return supervisor, server

    def _stop_locked(self, state: dict[str, Any]) -> bool:
        """Stop the state's server and supervisor (only processes this package started).

        Returns:
            Whether the server is gone (its state is then emptied). ``False``: it could
            not be signalled (not a process of ours) or did not exit; the state is kept.
        """
        sup_pid, server_pid = self._signal_targets(state)
        target = sup_pid if sup_pid is not None else server_pid
        if target is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self._server_alive(state) and time.monotonic() < deadline:
                time.sleep(0.05)
            if server_pid is not None and self._server_alive(state):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(server_pid, signal.SIGKILL)
                deadline = time.monotonic() + 5.0
                while self._server_alive(state) and time.monotonic() < deadline:
                    time.sleep(0.05)
        if self._server_alive(state):
            warnings.warn(
                f"managed server pid {state.get('server_pid')} ({self.state_path}) was not "
                + (
                    "stopped in time"
                    if target is not None
                    else "signalled: it is not a process this package started as you"
                )
                + "; its state is kept",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        state["clients"] = []
        self._write_state(None)
        return True


class _PortTakenError(ServerStartError):
    """The chosen port was taken before the server could bind it (retried on another)."""


def _read_pids(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, Any] | None:
    """Read the supervisor's one JSON line, waiting until ``deadline``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    try:
        data = json.loads(buf.split(b"\n", 1)[0] or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _memory_of(value: object) -> MemorySplit | None:
    """The split a state recorded (``None``: none, or not one)."""
    if not isinstance(value, dict):
        return None
    try:
        return MemorySplit(
            weights=int(value["weights"]),
            kv_cache=int(value["kv_cache"]),
            prompt_cache=int(value["prompt_cache"]),
            other=int(value["other"]),
            source=str(value.get("source", "estimate")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _status_of(key: str, state: dict[str, Any] | None, directory: Path) -> ServerStatus:
    if state is None:
        return ServerStatus(key=key, spec="", running=False)
    running = ManagedServer._server_alive(state)
    status = ServerStatus(key=key, spec=str(state.get("spec", "")), running=running)
    status.clients = [c["pid"] for c in ManagedServer._live_clients(state)]
    try:
        status.info = ManagedServer._info(state)
    except (KeyError, TypeError, ValueError):
        return status
    if not running:
        record = read_exit(directory / f"{key}.{state.get('launch_id')}.exit")
        status.last_exit = describe_exit(record)
        return status
    status.memory = _memory_of(state.get("memory"))
    status.allocated = read_allocated(directory / f"{key}.log")
    base = status.info.url
    code, _ = _http_json(base + "/health", timeout=5.0)
    status.healthy = code == 200
    code, props = _http_json(base + "/props", timeout=5.0, api_key=status.info.api_key)
    if code == 200 and isinstance(props, dict) and "is_sleeping" in props:
        status.sleeping = bool(props["is_sleeping"])
    watch = read_exit(directory / f"{key}.{state.get('launch_id')}.watch")
    if watch is not None and not status.clients:
        for name in ("idle_since", "sleeps_by", "exits_at"):
            value = watch.get(name)
            if isinstance(value, int | float):
                setattr(status, name, float(value))
    rss, pss = 0, 0
    pss_known = True
    for pid_key, start_key in (
        ("server_pid", "server_start"),
        ("supervisor_pid", "supervisor_start"),
    ):
        if not same_process(state.get(pid_key), state.get(start_key)):
            continue
        try:
            full = psutil.Process(int(state[pid_key])).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pss_known = False
            continue
        rss += int(full.rss)
        pss_value = getattr(full, "pss", None)
        if pss_value is None:
            pss_known = False
        else:
            pss += int(pss_value)
    status.rss, status.pss = rss, (pss if pss_known else None)
    return status


def running_servers(directory: Path | None = None) -> list[ServerStatus]:
    """Every managed server recorded in the runtime directory (running or not).

    Never waits more than :data:`STATUS_LOCK_WAIT` seconds per server for a held lock:
    the state is read without it and the holder is named in :attr:`ServerStatus.busy`.

    Raises:
        InsecureRuntimeDirError: Another user could change the directory's content.
    """
    runtime = _checked(directory)
    out = []
    for path in sorted(runtime.path.glob("*.json")):
        key = path.stem
        lock = runtime.path / f"{key}.lock"
        if key.startswith(".") or not lock.exists():
            continue
        try:
            state = _load_json(runtime, path)
            busy = _lock_busy(runtime, lock, STATUS_LOCK_WAIT)
        except InsecureRuntimeDirError as exc:
            warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
            continue
        if isinstance(state, dict) and state.get("version") == _STATE_VERSION:
            status = _status_of(key, state, runtime.path)
            status.busy = busy
            out.append(status)
    return out
