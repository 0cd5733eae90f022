"""A real two-node Ray cluster on 127.0.0.1 for tests: ``ray start --head`` and ``ray start
--address``, each a process tree of its own, stopped by process id (never ``ray stop``, which
would stop every Ray process of the user on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
#: Ray puts Unix sockets under its temp dir; their paths must stay under 107 bytes.
_SOCKET_SUFFIX = len("/session_2026-11-27_15-26-55_455123_123456/sockets/plasma_store")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_temp_root() -> Path:
    """Where the cluster writes its session files: ``SETRAF_TEST_CACHE`` (default
    ``<repo>/.cache/tests``), or a short directory under the system temp dir when that path
    is too long for Ray's Unix sockets."""
    base = Path(os.environ.get("SETRAF_TEST_CACHE", REPO / ".cache" / "tests"))
    base.mkdir(parents=True, exist_ok=True)
    if len(str(base)) + 8 + _SOCKET_SUFFIX < 107:
        return Path(tempfile.mkdtemp(prefix="r", dir=base))
    return Path(tempfile.mkdtemp(prefix="setraf-ray-"))


@dataclass
class LocalCluster:
    """A running cluster: GCS address, temp dir, and the two ``ray start --block`` processes."""

    address: str
    temp_dir: Path
    procs: list[subprocess.Popen[bytes]]
    log: Path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_USAGE_STATS_ENABLED"] = "0"  # no network calls
    env.pop("RAY_ADDRESS", None)
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [RAY, "start", "--block", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=_env(),
        start_new_session=True,  # its own process group: stopped by its id
    )


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.3)
    raise TimeoutError(f"Ray head did not open port {port}:\n{log.read_text()[-3000:]}")


def _descendants(pids: set[int]) -> set[int]:
    """``pids`` and every live process of this user below them (by parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if entry.stat().st_uid != os.getuid():
                continue
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _kill_tree(cluster: LocalCluster, timeout: float = 20.0) -> None:
    roots = {p.pid for p in cluster.procs}
    marker = str(cluster.temp_dir)
    tree = _descendants(roots)
    for pid, cmd in _cmdlines().items():
        if marker in cmd:
            tree |= _descendants({pid})
    for p in cluster.procs:  # ray start --block stops its own processes on SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in cluster.procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    for pid in tree:  # whatever is left: by id, only what this cluster started
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for p in cluster.procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def _cmdlines() -> dict[int, str]:
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == os.getuid():
                    out[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
    return out


@contextlib.contextmanager
def local_cluster(
    *, cpus_per_node: int = 1, object_store_bytes: int = 100_000_000, start_timeout: float = 90.0
) -> Iterator[LocalCluster]:
    """Start a head node and a second node on 127.0.0.1; stop both (by pid) on exit."""
    temp = ray_temp_root()
    log = temp / "ray-start.log"
    port = free_port()
    common = [
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus_per_node}",
        f"--object-store-memory={object_store_bytes}",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
    ]
    cluster = LocalCluster(address=f"127.0.0.1:{port}", temp_dir=temp, procs=[], log=log)
    try:
        head = _start(
            [
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                *common,
            ],
            log,
        )
        cluster.procs.append(head)
        deadline = time.monotonic() + start_timeout
        _wait_port(port, head, log, deadline)
        worker = _start(
            [
                f"--address={cluster.address}",
                f"--dashboard-agent-listen-port={free_port()}",
                *common,
            ],
            log,
        )
        cluster.procs.append(worker)
        yield cluster
    finally:
        _kill_tree(cluster)
        if not os.environ.get("SETRAF_KEEP_RAY_LOGS"):  # set it to keep the session logs
            shutil.rmtree(temp, ignore_errors=True)
