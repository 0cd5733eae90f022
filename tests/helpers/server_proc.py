"""A real llama.cpp server for tests: the xllamacpp wheel hosted by
``python -m langchain_setraf.backends.llama_server.xllamacpp_host`` in a child process on 127.0.0.1.

Used by the attach-backend tests (``tests/test_server_attach.py``,
``tests/test_chat_standard_server.py``) as the server to attach to.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

#: Seconds the server may take to answer /health with 200 (load + warm-up on 2 busy cores).
START_DEADLINE = 180.0
#: Seconds a stop may take before the process is killed.
STOP_GRACE = 15.0


@dataclass(frozen=True)
class RunningServer:
    """A started server: its root URL (no ``/v1``), process and log file."""

    root: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        """The OpenAI base URL."""
        return self.root + "/v1"

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"


def free_port() -> int:
    """A TCP port nothing listens on now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(server: RunningServer, deadline: float) -> None:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"the test server exited with status {code} before it was ready:\n"
                    f"{server.log_tail()}"
                )
            try:
                if client.get(server.root + "/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    raise RuntimeError(
        f"the test server at {server.root} was not healthy within {START_DEADLINE:g} s:\n"
        f"{server.log_tail()}"
    )


@contextmanager
def llama_server(
    model: str | os.PathLike[str],
    log_dir: Path,
    *,
    parallel: int = 2,
    ctx_per_slot: int = 2048,
    threads: int = 2,
    alias: str | None = None,
) -> Iterator[RunningServer]:
    """Run a llama.cpp server on a free loopback port until the block ends.

    Args:
        model: GGUF file to serve.
        log_dir: Where the server's log goes (``server-<port>.log``).
        parallel: Slots (concurrent requests the server batches).
        ctx_per_slot: Context tokens per slot (the server gets ``ctx_per_slot * parallel``).
        threads: CPU threads.
        alias: The model name the server reports (``-a``), else the file path.
    """
    port = free_port()
    log = log_dir / f"server-{port}.log"
    argv = [
        sys.executable, "-m", "langchain_setraf.backends.llama_server.xllamacpp_host",
        "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
        "-c", str(ctx_per_slot * parallel), "--parallel", str(parallel),
        "-t", str(threads), "--jinja", "--slots", "--metrics",
    ]  # fmt: skip
    if alias:
        argv += ["-a", alias]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_healthy(server, time.monotonic() + START_DEADLINE)
        yield server
    finally:
        stop(server)


def stop(server: RunningServer) -> None:
    """Stop the server (SIGTERM, then SIGKILL after a grace period)."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(STOP_GRACE)
