"""``setraf server status|stop|sleep``: the host's managed llama.cpp servers.

``status`` says why each running server is still up: its live clients, or since when it
has had none and when it sleeps and exits (see
:meth:`~langchain_setraf.backends.llama_server.managed.ServerStatus.why_up`).

Wire into the ``setraf`` parser with :func:`add_server_parser`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from langchain_setraf.backends.llama_server.managed import (
    LockBusyError,
    ManagedServer,
    ServerStatus,
    running_servers,
)
from langchain_setraf.memory import format_bytes

__all__ = ["add_server_parser", "run_server_command"]


def add_server_parser(sub: Any) -> None:
    """Add ``server`` (with ``status``, ``stop`` and ``sleep``) to ``setraf``'s subparsers."""
    server = sub.add_parser("server", help="managed llama.cpp servers on this host")
    actions = server.add_subparsers(dest="server_command", required=True)
    status = actions.add_parser("status", help="list the managed servers")
    status.add_argument("--json", action="store_true")
    for name, text in (
        ("stop", "stop a server (whoever is attached)"),
        ("sleep", "let a server unload its weights (stops it when it has no idle timer)"),
    ):
        action = actions.add_parser(name, help=text)
        target = action.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "key", nargs="?", help="a server's key (see status; a prefix is enough)"
        )
        target.add_argument("--all", action="store_true", help="every running server")
    server.set_defaults(func=run_server_command)


def _as_dict(status: ServerStatus) -> dict[str, Any]:
    info = status.info
    return {
        "key": status.key,
        "spec": status.spec,
        "running": status.running,
        "healthy": status.healthy,
        "sleeping": status.sleeping,
        "url": info.url if info else None,
        "pid": info.pid if info else None,
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
    }


def _line(status: ServerStatus) -> str:
    info = status.info
    busy = f"  (busy: lock held by {status.busy})" if status.busy else ""
    if not status.running or info is None:
        ended = f" ({status.last_exit})" if status.last_exit else ""
        return f"{status.key}  not running{ended}  {status.spec}{busy}"
    state = "sleeping" if status.sleeping else "ready" if status.healthy else "not answering"
    return (
        f"{status.key}  {state}  {info.url}  pid {info.pid}  {info.engine}  "
        f"{status.why_up()}  RSS {format_bytes(status.rss)}  "
        f"PSS {format_bytes(status.pss)}  {status.spec}{busy}"
    )


def _targets(args: argparse.Namespace) -> list[str]:
    servers = running_servers()
    if args.all:
        return [s.key for s in servers if s.running]
    keys = [s.key for s in servers]
    matches = [k for k in keys if k.startswith(args.key)]
    if len(matches) != 1:
        known = ", ".join(keys) if keys else "none is recorded"
        how = "no managed server matches" if not matches else "several managed servers match"
        raise LookupError(f"{how} {args.key!r} (servers: {known})")
    return matches


def run_server_command(args: argparse.Namespace) -> int:
    """Run ``setraf server ...``; returns the exit status."""
    if args.server_command == "status":
        servers = running_servers()
        if args.json:
            print(json.dumps([_as_dict(s) for s in servers], indent=1))
        elif not servers:
            print("no managed server")
        for status in [] if args.json else servers:
            print(_line(status))
        return 0
    exit_status = 0
    for key in _targets(args):
        server = ManagedServer.for_key(key)
        try:
            if args.server_command == "stop":
                if server.stop():
                    print(f"{key}: stopped")
                elif server.is_running():
                    print(f"{key}: not stopped (not a process this package started as you)")
                    exit_status = 1
                else:
                    print(f"{key}: not running")
            else:
                print(f"{key}: {server.sleep()}")
        except LockBusyError as exc:  # another process is starting or stopping it
            print(f"{key}: busy: {exc}")
            exit_status = 1
    return exit_status


if __name__ == "__main__":  # pragma: no cover - `setraf server` is the entry point
    parser = argparse.ArgumentParser(prog="python -m langchain_setraf.serve.cli")
    add_server_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    try:
        sys.exit(run_server_command(ns))
    except LookupError as exc:
        print(f"setraf server: error: {exc}", file=sys.stderr)
        sys.exit(2)
