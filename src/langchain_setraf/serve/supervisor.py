"""The detached process that runs a managed server and records how it ended.

``python -m langchain_setraf.serve.supervisor --log LOG --exit-file EXIT -- ARGV...``
detaches (a double fork: the client never has to reap it, and it outlives the client),
starts ``ARGV`` with its output appended to ``LOG``, prints one JSON line
``{"supervisor_pid": ..., "server_pid": ...}`` on its standard output and closes it, then
waits for the server. When the server exits, for any reason, the supervisor writes
``EXIT`` atomically: ``{"server_pid", "status", "signal", "stopped", "at"}`` (``status``:
the exit code, negative for a signal, as in :attr:`subprocess.Popen.returncode`). A
client whose request died with the server reads it to say how the server ended.

SIGTERM/SIGINT to the supervisor stop the server (SIGTERM, then SIGKILL after
:data:`STOP_GRACE_SECONDS`) and are recorded as ``"stopped": true``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from langchain_setraf.serve.private_files import (
    RuntimeDir,
    check_runtime_dir,
    open_runtime_file,
    read_runtime_file,
    write_runtime_file,
)

__all__ = ["STOP_GRACE_SECONDS", "describe_exit", "main", "read_exit", "write_json_atomic"]

#: Seconds the server gets to stop after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0


def _runtime_of(path: Path) -> RuntimeDir:
    """The checked runtime directory ``path`` is in (private, or a shared setgid one)."""
    return check_runtime_dir(path.parent, allow_shared=True, create=False)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a new private temporary file and a rename."""
    write_runtime_file(_runtime_of(path), path, json.dumps(data).encode())


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
    request (status 0)`` or ``exit status unknown (...)``."""
    if record is None:
        return "exit status unknown (its supervisor left no record)"
    status = record.get("status")
    if record.get("stopped"):
        return f"stopped on request (status {status})"
    if isinstance(status, int) and status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}"
    return f"exit status {status}"


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m langchain_setraf.serve.supervisor")
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--exit-file", required=True, type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(list(argv))
    if ns.command and ns.command[0] == "--":
        ns.command = ns.command[1:]
    if not ns.command:
        parser.error("no server command after --")
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    """Detach, run the server, record its exit. Returns the supervisor's exit status."""
    ns = _parse(sys.argv[1:] if argv is None else argv)
    if os.fork() != 0:  # the client reaps this parent at once; the child is reparented
        os._exit(0)
    stop_requested = False

    # the log is private: no link followed, created 0600 (0660 in a shared directory)
    log_fd = open_runtime_file(_runtime_of(ns.log), ns.log, os.O_WRONLY | os.O_APPEND)
    with open(log_fd, "ab", buffering=0) as log:
        try:
            # idle OpenMP workers sleep instead of spinning: a spinning server starves its
            # own HTTP thread and its clients on shared cores (see backends.gguf)
            env = dict(os.environ)
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            proc = subprocess.Popen(
                ns.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        except OSError as exc:
            log.write(f"supervisor: cannot start {ns.command[0]}: {exc}\n".encode())
            _report({"supervisor_pid": os.getpid(), "server_pid": None, "error": str(exc)})
            write_json_atomic(
                ns.exit_file,
                {
                    "server_pid": None,
                    "status": 127,
                    "signal": None,
                    "stopped": False,
                    "at": time.time(),
                    "error": str(exc),
                },
            )
            return 1

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stop_requested
            stop_requested = True
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        _report({"supervisor_pid": os.getpid(), "server_pid": proc.pid})
        status = _wait(proc, lambda: stop_requested)
    write_json_atomic(
        ns.exit_file,
        {
            "server_pid": proc.pid,
            "status": status,
            "signal": signal.Signals(-status).name if status < 0 else None,
            "stopped": stop_requested,
            "at": time.time(),
        },
    )
    return 0


def _wait(proc: subprocess.Popen[bytes], stopping: Any) -> int:
    """Wait for the server; once a stop is requested, kill it after the grace period."""
    deadline: float | None = None
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
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
