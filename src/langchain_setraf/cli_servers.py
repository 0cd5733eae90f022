"""``setraf ps``, ``setraf stop``, ``setraf sleep``: this host's managed llama.cpp servers.

``ps`` lists them with their model, pid, port, RSS/PSS, live clients and why each is still
up (its clients, or since when it has had none and when it sleeps and exits: see
:meth:`~langchain_setraf.backends.llama_server.managed.ServerStatus.why_up`), and under a
running one its memory split into weights / KV cache / prompt cache / other: the estimate
(the prompt cache at its cap) and what llama.cpp reported it allocated. ``stop`` and
``sleep`` act on servers this package started as the calling user, named by model (path or
file name) or key prefix, or ``--all``.

The old spellings (``setraf server status|stop|sleep``) still work, with a one-line
deprecation note on stderr naming the new verb; they are removed in 0.5.0.

Wire into the ``setraf`` parser with :func:`add_server_commands`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from langchain_setraf.backends.llama_server.managed import (
    LockBusyError,
    ManagedServer,
    ServerStatus,
    running_servers,
)
from langchain_setraf.cli_model import deprecated
from langchain_setraf.memory import format_bytes

__all__ = ["add_server_commands", "run_ps", "run_sleep", "run_stop"]

#: Old spelling → new verb (``setraf server status`` → ``setraf ps``).
_RENAMED = {"status": "ps", "stop": "stop", "sleep": "sleep"}


def _add_target(parser: argparse.ArgumentParser, what: str) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help=f"the server to {what}: its model (path or file name) or key prefix (see ps)",
    )
    target.add_argument("--all", action="store_true", help="every running managed server")


def add_server_commands(sub: Any) -> None:
    """Add ``ps``, ``stop``, ``sleep`` and the deprecated ``server`` group to ``setraf``."""
    ps = sub.add_parser("ps", help="list the managed llama.cpp servers on this host")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=run_ps)
    stop = sub.add_parser("stop", help="stop managed servers (only those this package started)")
    _add_target(stop, "stop")
    stop.set_defaults(func=run_stop)
    sleep = sub.add_parser(
        "sleep", help="let managed servers unload their weights (stops one with no idle timer)"
    )
    _add_target(sleep, "put to sleep")
    sleep.set_defaults(func=run_sleep)

    server = sub.add_parser("server", help="deprecated: use ps, stop, sleep")
    actions = server.add_subparsers(dest="server_command", required=True)
    status = actions.add_parser("status", help="deprecated: setraf ps")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=run_ps)
    for name, func in (("stop", run_stop), ("sleep", run_sleep)):
        action = actions.add_parser(name, help=f"deprecated: setraf {name}")
        _add_target(action, name)
        action.set_defaults(func=func)


def _as_dict(status: ServerStatus) -> dict[str, Any]:
    info = status.info
    return {
        "key": status.key,
        "spec": status.spec,
        "model": info.model_path if info else None,
        "running": status.running,
        "healthy": status.healthy,
        "sleeping": status.sleeping,
        "url": info.url if info else None,
        "pid": info.pid if info else None,
        "port": info.port if info else None,
        "engine": info.engine if info else None,
        "clients": status.clients,
        "why_up": status.why_up(),
        "idle_since": status.idle_since,
        "sleeps_by": status.sleeps_by,
        "exits_at": status.exits_at,
        "rss": status.rss,
        "pss": status.pss,
        "last_exit": status.last_exit,
        "busy": status.busy,
        "memory": None if status.memory is None else status.memory.as_dict(),
        "allocated": None if status.allocated is None else status.allocated.as_dict(),
    }


def _memory_lines(status: ServerStatus) -> list[str]:
    """The split under a running server's line: the estimate, and what llama.cpp
    reported it allocated."""
    lines = []
    for name, split in (("estimate", status.memory), ("allocated", status.allocated)):
        if split is not None:
            f = format_bytes
            lines.append(
                f"    {name:9}  weights {f(split.weights)}  KV cache {f(split.kv_cache)}  "
                f"prompt cache {f(split.prompt_cache)}"
                + (" (cap)" if name == "estimate" else "")
                + f"  other {f(split.other)}  total {f(split.total)}"
            )
    return lines


def _line(status: ServerStatus) -> str:
    info = status.info
    busy = f"  (busy: lock held by {status.busy})" if status.busy else ""
    if not status.running or info is None:
        ended = f" ({status.last_exit})" if status.last_exit else ""
        return f"{status.key}  not running{ended}  {status.spec}{busy}"
    state = "sleeping" if status.sleeping else "ready" if status.healthy else "not answering"
    return (
        f"{status.key}  {state}  {Path(info.model_path).name}  pid {info.pid}  "
        f"port {info.port}  {info.engine}  {status.why_up()}  RSS {format_bytes(status.rss)}  "
        f"PSS {format_bytes(status.pss)}  {status.spec}{busy}"
    )


def _legacy(args: argparse.Namespace) -> None:
    old = getattr(args, "server_command", None)
    if old is not None:
        deprecated(f"setraf server {old}", f"setraf {_RENAMED[old]}")


def _matches(status: ServerStatus, target: str) -> bool:
    if status.key.startswith(target):
        return True
    model = status.info.model_path if status.info else None
    if not model:
        return False
    return Path(model).name == target or model == str(Path(target).expanduser().resolve())


def _targets(args: argparse.Namespace) -> list[str]:
    servers = running_servers()
    if args.all:
        return [s.key for s in servers if s.running]
    matches = [s.key for s in servers if _matches(s, args.model)]
    if len(matches) != 1:
        known = ", ".join(_describe(s) for s in servers) if servers else "none is recorded"
        how = "no managed server matches" if not matches else "several managed servers match"
        raise LookupError(f"{how} {args.model!r} (servers: {known})")
    return matches


def _describe(status: ServerStatus) -> str:
    model = status.info.model_path if status.info else None
    return f"{status.key} ({Path(model).name})" if model else status.key


def run_ps(args: argparse.Namespace) -> int:
    """``setraf ps [--json]``: every managed server recorded on this host; returns 0."""
    _legacy(args)
    servers = running_servers()
    if args.json:
        print(json.dumps([_as_dict(s) for s in servers], indent=1))
        return 0
    if not servers:
        print("no managed server")
    for status in servers:
        print(_line(status))
        if status.running:
            for line in _memory_lines(status):
                print(line)
    return 0


def _each(args: argparse.Namespace, act: Any) -> int:
    exit_status = 0
    for key in _targets(args):
        server = ManagedServer.for_key(key)
        try:
            line, ok = act(server)
        except LockBusyError as exc:  # another process is starting or stopping it
            line, ok = f"busy: {exc}", False
        print(f"{key}: {line}")
        exit_status = exit_status if ok else 1
    return exit_status


def _stop(server: ManagedServer) -> tuple[str, bool]:
    if server.stop():
        return "stopped", True
    if server.is_running():
        return "not stopped (not a process this package started as you)", False
    return "not running", True


def run_stop(args: argparse.Namespace) -> int:
    """``setraf stop MODEL|--all``; returns 1 when a server could not be stopped."""
    _legacy(args)
    return _each(args, _stop)


def run_sleep(args: argparse.Namespace) -> int:
    """``setraf sleep MODEL|--all``; returns 1 when a server was busy."""
    _legacy(args)
    return _each(args, lambda server: (server.sleep(), True))
