"""A loopback Hugging Face Hub for ``setraf pull`` tests, and the CLI run against it.

The server implements just enough of the Hub's file-resolve API
(``HEAD``/``GET /{repo}/resolve/{revision}/{file}`` with ``ETag``, ``X-Repo-Commit``,
``X-Linked-Etag``, ``X-Linked-Size`` and ``Range``) for ``hf_hub_download``'s own code
path to run. The CLI runs in a subprocess with ``HF_ENDPOINT`` pointing at it, ``HF_HOME``
in a temporary folder and ``HF_HUB_OFFLINE=0``: nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from langchain_setraf.backends.gguf.file import GGUFInfo, read_gguf_header
from langchain_setraf.pull import Architecture

REPO_ID = "setraf-test/SmolLM2-135M-Instruct-GGUF"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    """State of the loopback Hub: what it serves and what it was asked.

    Attributes:
        drop_first_get_at: Cut the first GET's body after this many bytes.
        get_delay_s: Sleep before sending each GET body (keeps a download in flight).
    """

    path: Path
    payload: bytes
    filename: str
    drop_first_get_at: int | None = None
    get_delay_s: float = 0.0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _route(self) -> bool:
            m = re.fullmatch(
                r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.path
            )
            if not m or m["repo"] != REPO_ID or m["file"] != hub.filename:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            return True

        def _headers(self, status: int, start: int) -> None:
            size = len(hub.payload)
            self.send_response(status)
            self.send_header("ETag", f'"{hub.sha256}"')
            self.send_header("X-Linked-Etag", f'"{hub.sha256}"')
            self.send_header("X-Linked-Size", str(size))
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()

        def do_HEAD(self) -> None:
            hub.requests.append(("HEAD", self.path, None))
            if self._route():
                self._headers(200, 0)

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            hub.requests.append(("GET", self.path, rng))
            if not self._route():
                return
            start = 0
            if rng:
                m = re.fullmatch(r"bytes=(\d+)-", rng)
                assert m, rng
                start = int(m[1])
            self._headers(206 if start else 200, start)
            body = hub.payload[start:]
            gets = sum(1 for r in hub.requests if r[0] == "GET")
            if hub.get_delay_s:
                time.sleep(hub.get_delay_s)
            try:
                if hub.drop_first_get_at is not None and gets == 1:
                    self.wfile.write(body[: hub.drop_first_get_at])
                    self.wfile.flush()
                    self.close_connection = True  # drop mid-body: the client sees a short read
                    return
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (disk full, killed): not the server's problem

    return Handler


@contextmanager
def serve_fake_hub(model: Path) -> Iterator[FakeHub]:
    """Serve ``model`` as ``REPO_ID/<its name>`` on 127.0.0.1 for the ``with`` block."""
    hub = FakeHub(path=model, payload=model.read_bytes(), filename=model.name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def architecture(info: GGUFInfo) -> Architecture:
    """The catalogue's architecture fields read from a real GGUF header."""
    return Architecture(
        name=str(info.architecture),
        block_count=int(info.arch_value("block_count")),
        embedding_length=int(info.arch_value("embedding_length")),
        head_count=int(info.arch_value("attention.head_count")),
        head_count_kv=int(info.arch_value("attention.head_count_kv")),
        vocab_size=int(info.metadata["tokenizer.ggml.tokens"].length),
        feed_forward_length=int(info.arch_value("feed_forward_length")),
    )


def catalog_entry(hub: FakeHub, **overrides: Any) -> dict[str, Any]:
    """A catalogue entry (JSON dict) for the hub's model, fields overridden as given."""
    entry: dict[str, Any] = {
        "name": "smollm2-test",
        "repo": REPO_ID,
        "file": hub.filename,
        "revision": COMMIT,
        "size": len(hub.payload),
        "sha256": hub.sha256,
        "license": "Apache-2.0",
        "quant": "Q4_1",
        "description": "the embedded model, served from 127.0.0.1",
        "architecture": architecture(read_gguf_header(hub.path)).__dict__,
    }
    entry.update(overrides)
    return entry


def write_catalog(path: Path, *entries: dict[str, Any]) -> Path:
    """Write ``{"models": [entries...]}`` to ``path``."""
    path.write_text(json.dumps({"models": list(entries)}), encoding="utf-8")
    return path


def pull_env(hub: FakeHub, hf_home: Path, offline: str = "0") -> dict[str, str]:
    """The environment of a ``setraf pull`` subprocess that talks only to ``hub``."""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": offline,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    env.pop("HF_TOKEN", None)
    return env


def pull_command(*args: str) -> list[str]:
    """``python -m langchain_setraf.cli pull ARGS``."""
    return [sys.executable, "-m", "langchain_setraf.cli", "pull", *args]


def run_pull(
    hub: FakeHub, hf_home: Path, args: Sequence[str], offline: str = "0", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``setraf pull ARGS`` in a subprocess against ``hub``."""
    return subprocess.run(
        pull_command(*args),
        env=pull_env(hub, hf_home, offline),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
