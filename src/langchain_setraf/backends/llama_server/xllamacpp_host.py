"""Host xllamacpp's embedded llama.cpp server in this process, with llama-server's flags.

``python -m langchain_setraf.backends.llama_server.xllamacpp_host -m model.gguf --port 8080
...`` serves the model like ``llama-server`` with the same flags would, for the subset in
:data:`~langchain_setraf.backends.llama_server.engine.SERVER_FLAGS`; any other flag is refused
(exit 2).
SIGTERM or SIGINT stops the server and exits 0. A model llama.cpp cannot load exits 1
with a message naming the file.

Unlike ``llama-server``'s defaults, the host serves no web UI and grants no CORS origin
(:data:`NO_CORS_ORIGIN`, no credentials): a web page cannot read its answers.
``--api-key-file`` (one key per line, ``#`` comments) makes every endpoint but
``/health`` and ``/v1/models`` answer 401 without ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

__all__ = ["LOG_VERBOSITY", "NO_CORS_ORIGIN", "build_params", "main", "parse_args", "read_api_keys"]

#: llama-server's ``--load-mode`` values and xllamacpp's names for them.
_LOAD_MODES = {
    "auto": "LLAMA_LOAD_MODE_AUTO",
    "none": "LLAMA_LOAD_MODE_NONE",
    "mmap": "LLAMA_LOAD_MODE_MMAP",
    "mlock": "LLAMA_LOAD_MODE_MLOCK",
    "mmap+mlock": "LLAMA_LOAD_MODE_MMAP_MLOCK",
    "dio": "LLAMA_LOAD_MODE_DIRECT_IO",
}

#: llama.cpp's log verbosity in the host. At xllamacpp's default (3) the load logs no
#: buffer sizes; at 4 it logs them as a ``llama-server`` binary does ("CPU KV buffer size =
#: 11.25 MiB", ...: about 190 lines a load), so ``setraf ps`` shows what the server's
#: llama.cpp allocated beside the estimate
#: (:func:`~langchain_setraf.backends.llama_buffers.parse_buffer_lines`).
LOG_VERBOSITY = 4

#: The one origin CORS is granted to: none a browser can send (llama.cpp reflects ``*``
#: and allows credentials by default).
NO_CORS_ORIGIN = "null.invalid"

#: Seconds a stop may take before the process exits without waiting for the server.
STOP_GRACE_SECONDS = 10.0


#: llama-server's ``--flash-attn`` words -> xllamacpp's enum member suffix.
_FLASH = {"on": "ENABLED", "off": "DISABLED", "auto": "AUTO"}
#: llama-server's ``--pooling`` words -> xllamacpp's ``llama_pooling_type`` suffix.
_POOLING = {"none": "NONE", "mean": "MEAN", "cls": "CLS", "last": "LAST", "rank": "RANK"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m langchain_setraf.backends.llama_server.xllamacpp_host",
        description="Serve a GGUF model with xllamacpp (llama-server's flags, a subset).",
        allow_abbrev=False,
    )
    parser.add_argument("-m", "--model", dest="model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-c", "--ctx-size", dest="ctx_size", type=int, default=0)
    parser.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=None)
    parser.add_argument("-ub", "--ubatch-size", dest="ubatch_size", type=int, default=None)
    parser.add_argument("-t", "--threads", dest="threads", type=int, default=-1)
    parser.add_argument("-ngl", "--n-gpu-layers", dest="n_gpu_layers", type=int, default=None)
    parser.add_argument("-np", "--parallel", dest="parallel", type=int, default=1)
    parser.add_argument(
        "-lm", "--load-mode", choices=sorted(_LOAD_MODES), default="auto", dest="load_mode"
    )
    parser.add_argument("--no-repack", action="store_true")
    parser.add_argument("--sleep-idle-seconds", type=int, default=None)
    parser.add_argument("-cram", "--cache-ram", dest="cache_ram", type=int, default=None)
    parser.add_argument("--ctx-checkpoints", dest="ctx_checkpoints", type=int, default=None)
    parser.add_argument("-ctk", "--cache-type-k", dest="cache_type_k", default=None)
    parser.add_argument("-ctv", "--cache-type-v", dest="cache_type_v", default=None)
    parser.add_argument(
        "-fa", "--flash-attn", dest="flash_attn", choices=("on", "off", "auto"), default="auto"
    )
    parser.add_argument("-a", "--alias", default=None)
    parser.add_argument("--api-key-file", default=None)
    parser.add_argument("--jinja", action="store_true")
    parser.add_argument("--metrics", action="store_true")
    parser.add_argument("--slots", action="store_true")
    parser.add_argument("--cont-batching", action="store_true")
    parser.add_argument("--embedding", "--embeddings", dest="embedding", action="store_true")
    parser.add_argument("--pooling", choices=sorted(_POOLING), default=None)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse llama-server flags; unknown flags exit with status 2 and name the flag."""
    return _parser().parse_args(list(argv))


def build_params(xllamacpp: Any, ns: argparse.Namespace) -> Any:
    """The ``xllamacpp.CommonParams`` that match llama-server's meaning of the flags."""
    params = xllamacpp.CommonParams()
    params.model.path = ns.model
    params.hostnames = [ns.host]
    params.port = ns.port
    params.n_ctx = ns.ctx_size
    params.n_parallel = ns.parallel
    if ns.batch_size is not None:
        params.n_batch = ns.batch_size
    if ns.ubatch_size is not None:
        params.n_ubatch = ns.ubatch_size
    params.cpuparams.n_threads = ns.threads
    params.cpuparams_batch.n_threads = ns.threads
    if ns.n_gpu_layers is not None:
        params.n_gpu_layers = ns.n_gpu_layers
    params.load_mode = getattr(xllamacpp.llama_load_mode, _LOAD_MODES[ns.load_mode])
    params.no_extra_bufts = bool(ns.no_repack)
    if ns.sleep_idle_seconds is not None:
        params.sleep_idle_seconds = ns.sleep_idle_seconds
    if ns.cache_ram is not None:
        params.cache_ram_mib = ns.cache_ram
    if ns.ctx_checkpoints is not None:
        params.n_ctx_checkpoints = ns.ctx_checkpoints
    for name in ("cache_type_k", "cache_type_v"):
        value = getattr(ns, name)
        if value is not None:
            setattr(params, name, getattr(xllamacpp.ggml_type, f"GGML_TYPE_{value.upper()}"))
    params.flash_attn_type = getattr(
        xllamacpp.llama_flash_attn_type, f"LLAMA_FLASH_ATTN_TYPE_{_FLASH[ns.flash_attn]}"
    )
    if ns.alias:
        params.model_alias = {ns.alias}
    if ns.api_key_file:
        params.api_keys = read_api_keys(ns.api_key_file)
    params.cors_origins = NO_CORS_ORIGIN
    params.cors_origins_explicit = True
    params.cors_credentials = False
    params.ui = False
    params.use_jinja = bool(ns.jinja)
    params.endpoint_metrics = bool(ns.metrics)
    params.endpoint_slots = bool(ns.slots)
    params.cont_batching = True if ns.cont_batching else params.cont_batching
    params.embedding = bool(ns.embedding)
    if ns.pooling is not None:
        params.pooling_type = getattr(
            xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{_POOLING[ns.pooling]}"
        )
    params.verbosity = LOG_VERBOSITY
    return params


def read_api_keys(path: str) -> list[str]:
    """The keys in ``path``, one per line (blank lines and ``#`` comments skipped), as
    llama-server's ``--api-key-file`` reads them.

    Raises:
        ValueError: The file holds no key.
    """
    with open(path, encoding="utf-8") as fh:
        keys = [line.strip() for line in fh]
    keys = [k for k in keys if k and not k.startswith("#")]
    if not keys:
        raise ValueError(f"--api-key-file {path}: no API key in the file")
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status."""
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import xllamacpp
    except ImportError as exc:
        print(f"xllamacpp is not installed: pip install 'langchain-setraf[server]' ({exc})")
        return 1
    try:
        params = build_params(xllamacpp, ns)
    except (OSError, ValueError) as exc:
        print(f"xllamacpp_host: {exc}", flush=True)
        return 1
    stop = threading.Event()
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # xllamacpp raises RuntimeError for any failure to start
        # llama.cpp logs the cause from a thread that may not flush before this exit: say
        # here when the cause is the port (the managed server retries on another one)
        busy = _port_in_use(ns.host, ns.port)
        cause = f"couldn't bind {ns.host}:{ns.port}: {busy}" if busy else f"cannot serve {ns.model}"
        print(f"xllamacpp_host: {cause}: {exc}", flush=True)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # xllamacpp installs its own SIGTERM/SIGINT handlers (they end its loop and leave this
    # thread waiting): take them back so a stop also ends this process.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"xllamacpp_host: serving {ns.model} on {server.listening_address}", flush=True)
    while not stop.wait(1.0):
        pass
    watchdog = threading.Timer(STOP_GRACE_SECONDS, _force_exit)
    watchdog.daemon = True
    watchdog.start()
    started = time.monotonic()
    del server  # terminates the loop and joins its thread
    print(f"xllamacpp_host: stopped in {time.monotonic() - started:.1f} s", flush=True)
    return 0


def _port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound now (``None``: it can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _force_exit() -> None:
    print("xllamacpp_host: the server did not stop in time; exiting", flush=True)
    import os

    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
