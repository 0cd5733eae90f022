"""Clean-up of the managed llama.cpp servers a test's runtime directory started."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil

from langchain_setraf.backends.llama_server import managed


def kill_servers(directory: Path) -> None:
    """SIGKILL every supervisor and server this runtime directory started."""
    victims: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if any(str(directory) in part for part in cmd):
            victims.append(proc)  # supervisors: their --log is in the directory
    for path in directory.glob("*.json"):
        try:
            state = json.loads(path.read_text() or "null")
        except ValueError:
            continue
        if isinstance(state, dict) and managed.same_process(
            state.get("server_pid"), state.get("server_start")
        ):
            victims.append(psutil.Process(state["server_pid"]))
    for proc in victims:
        for child in _children(proc):
            victims.append(child)
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def gone(pid: int, timeout: float = 15.0) -> bool:
    """Whether process ``pid`` has exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if managed.process_start(pid) is None:
            return True
        time.sleep(0.05)
    return False
