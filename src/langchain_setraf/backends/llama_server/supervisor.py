"""The detached process that runs a managed server, ends it when no client is left, and
records how it ended.

``python -m langchain_setraf.backends.llama_server.supervisor --log LOG --exit-file EXIT [watch
options] -- ARGV...`` detaches (a double fork: the client never has to reap it, and it outlives the
client), starts ``ARGV`` with its output copied to ``LOG`` (a :class:`RotatingLog`: at most
``--log-max-bytes``, one older file ``LOG.1``, both ``0600``), prints one JSON line
``{"supervisor_pid": ..., "server_pid": ...}`` on its standard output and closes it, then
waits for the server. When the server exits, for any reason, the supervisor writes ``EXIT``
atomically: ``{"server_pid", "status", "signal", "stopped", "reason", "at"}`` (``status``:
the exit code, negative for a signal, as in :attr:`subprocess.Popen.returncode`). A client
whose request died with the server reads it to say how the server ended.

SIGTERM/SIGINT to the supervisor stop the server (SIGTERM, then SIGKILL after
:data:`STOP_GRACE_SECONDS`) and are recorded as ``"stopped": true``.

Idle exit. Given ``--state STATE --lock LOCK --launch-id ID --keep-alive K --exit-grace G``,
the supervisor checks every :data:`WATCH_INTERVAL` seconds which client processes the state
names (pid and start time, so a reused pid is not a client). Once the server has answered
``/health`` and no client is alive (all exited, or were killed without detaching; or the
state names another launch), the server has no one to serve: it unloads its weights after
``K`` idle seconds by itself (``--sleep-idle-seconds K``, which the server is started with)
and the supervisor stops it ``G`` seconds later, holding ``LOCK`` so that no client
attaches meanwhile, and records ``"reason"``. While idle it keeps ``WATCH``
(``--watch-file``) up to date: ``{"idle_since", "sleeps_by", "exits_at", "keep_alive",
"exit_grace"}`` (``idle_since`` ``null`` while a client is alive), which ``setraf server
status`` shows.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

import psutil

from langchain_setraf.backends.llama_server.private_files import (
    RuntimeDir,
    check_runtime_dir,
    read_runtime_file,
    write_runtime_file,
)
from langchain_setraf.backends.llama_server.rotating_log import RotatingLog
from langchain_setraf.settings import Settings

__all__ = [
    "DEFAULT_EXIT_GRACE",
    "LOG_BACKUPS",
    "LOG_MAX_BYTES",
    "STOP_GRACE_SECONDS",
    "WATCH_INTERVAL",
    "IdleWatch",
    "describe_exit",
    "main",
    "read_exit",
    "same_start",
    "write_json_atomic",
]

#: Seconds the server gets to stop after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0
#: Seconds between two looks at the state's clients (a read of one small file and a
#: ``/proc`` lookup per client).
WATCH_INTERVAL: Final = 1.0
#: Seconds a server with no live client stays up after its ``keep_alive`` (it sleeps, with
#: its weights unloaded, and wakes for a client that attaches in time) before it exits.
DEFAULT_EXIT_GRACE: Final = Settings.server_exit_grace
#: Bytes the server's log may reach before it is rotated (``LOG`` becomes ``LOG.1``).
LOG_MAX_BYTES: Final = Settings.server_log_max_bytes
#: Rotated logs kept beside the current one.
LOG_BACKUPS: Final = 1
#: Bytes read from the server's output at once.
_CHUNK: Final = 65536


def _runtime_of(path: Path) -> RuntimeDir:
    """The checked runtime directory ``path`` is in (private, or a shared setgid one)."""
    return check_runtime_dir(path.parent, allow_shared=True, create=False)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a new private temporary file and a rename."""
    write_runtime_file(_runtime_of(path), path, json.dumps(data).encode())


def _read_json(path: Path) -> Any:
    """The JSON at ``path`` (never through a symlink); raises ``OSError``/``ValueError``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        return json.loads(fh.read(1 << 20) or b"null")


def read_exit(path: Path) -> dict[str, Any] | None:
    """The exit record at ``path``, or ``None`` when there is none (or it is unreadable,
    a link, or another user's file)."""
    try:
        raw = read_runtime_file(_runtime_of(path), path)
        data = json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_exit(record: dict[str, Any] | None) -> str:
    """How a server ended, in words: ``exit status 1``, ``killed by SIGKILL``, ``stopped on
    request (status 0)``, ``stopped: no live client for 65 s (...) (status 0)`` or ``exit
    status unknown (...)``."""
    if record is None:
        return "exit status unknown (its supervisor left no record)"
    status = record.get("status")
    if record.get("reason"):
        return f"stopped: {record['reason']} (status {status})"
    if record.get("stopped"):
        return f"stopped on request (status {status})"
    if isinstance(status, int) and status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}"
    return f"exit status {status}"


def same_start(pid: object, start: object) -> bool:
    """Whether ``pid`` is alive, not a zombie, and started at ``start`` (not a reused pid)."""
    if not isinstance(pid, int) or not isinstance(start, int | float) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(float(proc.create_time()) - float(start)) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


class IdleWatch:
    """Decides when a server with no live client has been idle for ``keep_alive +
    exit_grace`` seconds (see the module's docstring).

    Args:
        state_path: The managed server's state file (read only, never locked).
        lock_path: Its lock file, held while the stop is decided and done.
        launch_id: This launch's id: a state naming another launch has no client for it.
        port: The server's port on 127.0.0.1 (its ``/health`` says when it is ready).
        keep_alive: Idle seconds after which the server unloads its weights.
        exit_grace: Further seconds before it is stopped.
        watch_path: Where the idle times are published for ``status`` (``None``: nowhere).
        clock: Seconds since the epoch (tests pass their own).
    """

    def __init__(
        self,
        *,
        state_path: Path,
        lock_path: Path,
        launch_id: str,
        port: int,
        keep_alive: float,
        exit_grace: float,
        watch_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_path = state_path
        self.lock_path = lock_path
        self.launch_id = launch_id
        self.port = port
        self.keep_alive = keep_alive
        self.exit_grace = exit_grace
        self.watch_path = watch_path
        self.clock = clock
        self.ready = False
        self.idle_since: float | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def exits_at(self) -> float | None:
        """When the server is stopped if no client attaches (``None``: a client is alive)."""
        return (
            None if self.idle_since is None else self.idle_since + self.keep_alive + self.exit_grace
        )

    def live_clients(self) -> int | None:
        """How many clients the state names that are alive (``None``: unreadable now, e.g.
        being rewritten)."""
        try:
            state = _read_json(self.state_path)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("launch_id") != self.launch_id:
            return 0  # emptied or replaced: this server is no one's any more
        clients = state.get("clients")
        if not isinstance(clients, list):
            return 0
        return sum(
            1 for c in clients if isinstance(c, dict) and same_start(c.get("pid"), c.get("start"))
        )

    def _healthy(self) -> bool:
        try:
            with self._opener.open(f"http://127.0.0.1:{self.port}/health", timeout=2.0) as r:
                return int(r.status) == 200
        except (OSError, ValueError):
            return False

    def tick(self) -> bool:
        """Look once; ``True`` when the server has been without a client for long enough."""
        clients = self.live_clients()
        if clients is None:
            return False
        if not self.ready:
            self.ready = clients > 0 or self._healthy()
            if not self.ready:
                return False  # still loading: its starter waits for it
        if clients:
            if self.idle_since is not None:
                self.idle_since = None
                self._publish()
            return False
        if self.idle_since is None:
            self.idle_since = self.clock()
            self._publish()
        exits_at = self.exits_at
        return exits_at is not None and self.clock() >= exits_at

    def confirm(self) -> int | None:
        """Take the lock (without waiting) and look again: the held lock's descriptor when
        there is still no client (close it once the server is gone), else ``None``."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # a client is attaching (or a stop is under way): look again later
            return None
        if self.live_clients() == 0:
            return fd
        os.close(fd)
        return None

    def reason(self) -> str:
        """Why the server was stopped, in words."""
        idle = 0.0 if self.idle_since is None else self.clock() - self.idle_since
        return (
            f"no live client for {idle:.0f} s (keep_alive {self.keep_alive:g} s + "
            f"exit grace {self.exit_grace:g} s)"
        )

    def _publish(self) -> None:
        if self.watch_path is None:
            return
        since = self.idle_since
        record = {
            "idle_since": since,
            "sleeps_by": None if since is None else since + self.keep_alive,
            "exits_at": self.exits_at,
            "keep_alive": self.keep_alive,
            "exit_grace": self.exit_grace,
        }
        with contextlib.suppress(OSError):
            write_json_atomic(self.watch_path, record)

    def forget(self) -> None:
        """Remove the published record (the server is gone)."""
        if self.watch_path is not None:
            with contextlib.suppress(OSError):
                self.watch_path.unlink()


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m langchain_setraf.backends.llama_server.supervisor"
    )
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--log-max-bytes", type=int, default=LOG_MAX_BYTES)
    parser.add_argument("--exit-file", required=True, type=Path)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--lock", type=Path, default=None)
    parser.add_argument("--launch-id", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--keep-alive", type=float, default=None)
    parser.add_argument("--exit-grace", type=float, default=DEFAULT_EXIT_GRACE)
    parser.add_argument("--watch-file", type=Path, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(list(argv))
    if ns.command and ns.command[0] == "--":
        ns.command = ns.command[1:]
    if not ns.command:
        parser.error("no server command after --")
    watch = (ns.state, ns.lock, ns.launch_id, ns.port, ns.keep_alive)
    if any(v is not None for v in watch) and any(v is None for v in watch):
        parser.error("--state, --lock, --launch-id, --port and --keep-alive go together")
    if ns.log_max_bytes < 4096:
        parser.error(f"--log-max-bytes must be >= 4096, got {ns.log_max_bytes}")
    if ns.exit_grace < 0 or (ns.keep_alive is not None and ns.keep_alive < 0):
        parser.error("--keep-alive and --exit-grace must be >= 0 seconds")
    return ns


def _watch_of(ns: argparse.Namespace) -> IdleWatch | None:
    if ns.state is None:
        return None
    return IdleWatch(
        state_path=ns.state,
        lock_path=ns.lock,
        launch_id=ns.launch_id,
        port=ns.port,
        keep_alive=ns.keep_alive,
        exit_grace=ns.exit_grace,
        watch_path=ns.watch_file,
    )


def _pump(source: Any, log: RotatingLog) -> None:
    """Copy the server's output to the log until it closes it."""
    fd = source.fileno()
    while True:
        try:
            chunk = os.read(fd, _CHUNK)
        except OSError:
            return
        if not chunk:
            return
        with contextlib.suppress(OSError):
            log.write(chunk)


def main(argv: Sequence[str] | None = None) -> int:
    """Detach, run the server, stop it when idle, record its exit. Returns the
    supervisor's exit status."""
    ns = _parse(sys.argv[1:] if argv is None else argv)
    if os.fork() != 0:  # the client reaps this parent at once; the child is reparented
        os._exit(0)
    stop_requested = False
    try:
        log = RotatingLog(ns.log, ns.log_max_bytes, LOG_BACKUPS)
    except OSError as exc:  # e.g. a link planted at the log's path: refused, named
        print(f"supervisor: cannot open the log: {exc}", file=sys.stderr, flush=True)
        _report({"supervisor_pid": os.getpid(), "server_pid": None, "error": str(exc)})
        return 1
    try:
        # idle OpenMP workers sleep instead of spinning: a spinning server starves its
        # own HTTP thread and its clients on shared cores (see backends.gguf)
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        proc = subprocess.Popen(
            ns.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
    except OSError as exc:
        log.write(f"supervisor: cannot start {ns.command[0]}: {exc}\n".encode())
        log.close()
        _report({"supervisor_pid": os.getpid(), "server_pid": None, "error": str(exc)})
        write_json_atomic(
            ns.exit_file,
            {
                "server_pid": None,
                "status": 127,
                "signal": None,
                "stopped": False,
                "reason": None,
                "at": time.time(),
                "error": str(exc),
            },
        )
        return 1
    pump = threading.Thread(target=_pump, args=(proc.stdout, log), daemon=True)
    pump.start()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _report({"supervisor_pid": os.getpid(), "server_pid": proc.pid})
    watch = _watch_of(ns)
    reason: str | None = None
    lock_fd: int | None = None

    def idle_stop() -> bool:
        nonlocal stop_requested, reason, lock_fd
        if watch is None or stop_requested or not watch.tick():
            return False
        lock_fd = watch.confirm()
        if lock_fd is None:
            return False
        reason = watch.reason()
        log.write(f"supervisor: stopping the server: {reason}\n".encode())
        stop_requested = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return True

    try:
        status = _wait(proc, lambda: stop_requested, idle_stop)
        pump.join(timeout=5.0)
        write_json_atomic(
            ns.exit_file,
            {
                "server_pid": proc.pid,
                "status": status,
                "signal": signal.Signals(-status).name if status < 0 else None,
                "stopped": stop_requested,
                "reason": reason,
                "at": time.time(),
            },
        )
    finally:
        if watch is not None:
            watch.forget()
        if lock_fd is not None:
            os.close(lock_fd)  # the server is gone: clients may start a new one
        log.close()
    return 0


def _wait(
    proc: subprocess.Popen[bytes], stopping: Callable[[], bool], idle: Callable[[], bool]
) -> int:
    """Wait for the server; look for idleness every :data:`WATCH_INTERVAL` seconds; once a
    stop is requested, kill it after the grace period."""
    deadline: float | None = None
    next_look = time.monotonic() + WATCH_INTERVAL
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= next_look:
            idle()
            next_look = time.monotonic() + WATCH_INTERVAL
        if stopping():
            if deadline is None:
                deadline = time.monotonic() + STOP_GRACE_SECONDS
            elif time.monotonic() > deadline:
                proc.kill()


def _report(data: dict[str, Any]) -> None:
    """Print the pids line for the client, then let go of the pipe."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
