"""Which program serves a managed model, and the llama-server command line it gets.

Two engines speak the same flags (the subset in :data:`SERVER_FLAGS`):

- ``xllamacpp``: the prebuilt ``xllamacpp`` wheel (llama.cpp's server compiled into a Python
  extension), hosted in a child process by
  :mod:`langchain_setraf.backends.llama_server.xllamacpp_host`.
  Nothing to compile: ``pip install 'langchain-setraf[server]'``.
- ``llama-server``: llama.cpp's own binary, from ``$LLAMA_SERVER_BIN`` or ``llama-server``
  on ``PATH``.

Resolution order: ``$LLAMA_SERVER_BIN`` (must be an executable file, else
:class:`EngineNotFoundError`) > :data:`DEFAULT_ENGINE` when it is installed > the other one.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINE_ENV",
    "SERVER_FLAGS",
    "Engine",
    "EngineNotFoundError",
    "ServerArgs",
    "load_mode",
    "resolve_engine",
    "server_argv",
]

EngineName = Literal["xllamacpp", "llama-server"]

#: The engine used when ``$LLAMA_SERVER_BIN`` is unset and both are installed. The
#: ``xllamacpp`` wheel needs no compiler and measured as fast as a ``llama-server`` built from
#: the llama.cpp tree vendored by llama-cpp-python (issue #14: 109.8 vs 102.8 tokens/s for
#: one stream, 150.9 vs 170.3 for four, SmolLM2-135M Q4_1, 2 cores).
DEFAULT_ENGINE: Final[EngineName] = "xllamacpp"

#: Environment variable naming a ``llama-server`` executable to use instead.
ENGINE_ENV: Final = "LLAMA_SERVER_BIN"

#: The llama-server flags a managed server is started with; the xllamacpp host accepts
#: exactly these (``True``: the flag takes a value).
SERVER_FLAGS: Final[Mapping[str, bool]] = {
    "-m": True,
    "--host": True,
    "--port": True,
    "-c": True,
    "-b": True,
    "-ub": True,
    "-t": True,
    "-ngl": True,
    "--parallel": True,
    "--load-mode": True,
    "--no-repack": False,
    "--sleep-idle-seconds": True,
    "--cache-ram": True,
    "--ctx-checkpoints": True,
    "--alias": True,
    "--api-key-file": True,
    "--jinja": False,
    "--metrics": False,
    "--slots": False,
    "--cont-batching": False,
    "--embeddings": False,
    "--pooling": True,
}

_HOST_MODULE = "langchain_setraf.backends.llama_server.xllamacpp_host"


class EngineNotFoundError(RuntimeError):
    """No engine can serve a model: ``$LLAMA_SERVER_BIN`` is wrong, or none is installed."""


@dataclass(frozen=True)
class Engine:
    """A program that serves llama.cpp's HTTP API.

    Attributes:
        name: ``"xllamacpp"`` or ``"llama-server"``.
        command: The argv prefix the server flags are appended to.
    """

    name: EngineName
    command: tuple[str, ...]

    def describe(self) -> str:
        """``xllamacpp`` or ``llama-server (/path/to/llama-server)``."""
        return self.name if self.name == "xllamacpp" else f"{self.name} ({self.command[0]})"


def _xllamacpp_engine() -> Engine | None:
    if importlib.util.find_spec("xllamacpp") is None:
        return None
    return Engine("xllamacpp", (sys.executable, "-m", _HOST_MODULE))


def _binary_engine(path: str | None) -> Engine | None:
    found = shutil.which("llama-server", path=path)
    return Engine("llama-server", (found,)) if found else None


def resolve_engine(env: Mapping[str, str] | None = None) -> Engine:
    """The engine that serves managed models in this environment.

    Args:
        env: Environment to read (default ``os.environ``).

    Raises:
        EngineNotFoundError: ``$LLAMA_SERVER_BIN`` does not name an executable file, or
            neither ``xllamacpp`` nor a ``llama-server`` on ``PATH`` is installed.
    """
    env = os.environ if env is None else env
    explicit = env.get(ENGINE_ENV)
    if explicit:
        if not os.path.isfile(explicit):
            raise EngineNotFoundError(f"{ENGINE_ENV}={explicit}: no such file")
        if not os.access(explicit, os.X_OK):
            raise EngineNotFoundError(f"{ENGINE_ENV}={explicit}: not executable")
        return Engine("llama-server", (os.path.abspath(explicit),))
    order = ["xllamacpp", "llama-server"]
    if DEFAULT_ENGINE == "llama-server":
        order.reverse()
    for name in order:
        engine = _xllamacpp_engine() if name == "xllamacpp" else _binary_engine(env.get("PATH"))
        if engine is not None:
            return engine
    raise EngineNotFoundError(
        "no llama.cpp server engine: pip install 'langchain-setraf[server]' (xllamacpp), "
        f"or put llama-server on PATH, or set {ENGINE_ENV}=/path/to/llama-server"
    )


@dataclass(frozen=True)
class ServerArgs:
    """What a managed server is started with (llama-server's meaning for each).

    Attributes:
        model_path: The GGUF file (``-m``).
        port: TCP port on 127.0.0.1 (``--port``).
        n_ctx: Context tokens per slot (the server's ``-c`` is ``n_ctx * n_parallel``).
        n_parallel: Slots decoded together (``--parallel``).
        n_threads: CPU threads (``-t``).
        n_batch: Logical batch size (``-b``); ``None``: llama.cpp's default.
        n_ubatch: Physical batch size (``-ub``); ``None``: llama.cpp's default (512). An
            embedding server evaluates each text in one physical batch.
        n_gpu_layers: Layers offloaded to a GPU (``-ngl``); 0 keeps everything on the CPU.
        use_mmap: ``False``: ``--load-mode none`` (or ``mlock``).
        use_mlock: ``True``: ``--load-mode mmap+mlock`` (or ``mlock`` without mmap).
        repack: ``False`` (the default, as ``GGUFLLM``'s) adds ``--no-repack``.
        sleep_idle_seconds: Unload the weights after this many idle seconds
            (``--sleep-idle-seconds``); ``None``: never.
        cache_ram_mib: Cap of the prompt cache in MiB (``--cache-ram``; 0: no prompt
            cache); ``None``: llama.cpp's default (8,192 MiB).
        ctx_checkpoints: Context checkpoints kept per slot (``--ctx-checkpoints``);
            ``None``: llama.cpp's default (32).
        type_k: KV cache key type (``--cache-type-k``); ``f16`` is llama.cpp's default.
        type_v: KV cache value type (``--cache-type-v``).
        flash_attn: ``--flash-attn on|off|auto`` (``"auto"``: llama.cpp's default).
        alias: Model name the server reports (``--alias``).
        api_key_file: A private file holding the API key every request must carry
            (``--api-key-file``; the key itself never appears on a command line, which
            every user of the host can read).
        embedding: Serve ``/v1/embeddings`` only (``--embeddings``; no ``--jinja``).
        pooling: The embeddings' pooling (``--pooling mean|cls|last``); ``None``: the
            file's own.
    """

    model_path: str
    port: int
    n_ctx: int
    n_parallel: int
    n_threads: int
    n_batch: int | None = None
    n_gpu_layers: int = 0
    use_mmap: bool = True
    use_mlock: bool = False
    repack: bool = False
    sleep_idle_seconds: int | None = None
    cache_ram_mib: int | None = None
    ctx_checkpoints: int | None = None
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: str | bool = "auto"
    alias: str | None = None
    api_key_file: str | None = None
    n_ubatch: int | None = None
    embedding: bool = False
    pooling: str | None = None


def load_mode(use_mmap: bool, use_mlock: bool) -> str:
    """llama.cpp's ``--load-mode`` for the mmap/mlock options (``auto``: mmap)."""
    if use_mlock:
        return "mmap+mlock" if use_mmap else "mlock"
    return "auto" if use_mmap else "none"


def server_argv(engine: Engine, args: ServerArgs) -> list[str]:
    """The full command line that starts ``engine`` with ``args`` on 127.0.0.1."""
    argv = [*engine.command, "-m", args.model_path, "--host", "127.0.0.1"]
    argv += ["--port", str(args.port), "-c", str(args.n_ctx * args.n_parallel)]
    argv += ["--parallel", str(args.n_parallel), "-t", str(args.n_threads)]
    argv += ["-ngl", str(args.n_gpu_layers)]
    if args.n_batch is not None:
        argv += ["-b", str(args.n_batch)]
    if args.n_ubatch is not None:
        argv += ["-ub", str(args.n_ubatch)]
    mode = load_mode(args.use_mmap, args.use_mlock)
    if mode != "auto":
        argv += ["--load-mode", mode]
    if not args.repack:
        argv.append("--no-repack")
    if args.sleep_idle_seconds is not None:
        argv += ["--sleep-idle-seconds", str(args.sleep_idle_seconds)]
    if args.cache_ram_mib is not None:
        argv += ["--cache-ram", str(args.cache_ram_mib)]
    if args.ctx_checkpoints is not None:
        argv += ["--ctx-checkpoints", str(args.ctx_checkpoints)]
    if args.type_k != "f16":
        argv += ["--cache-type-k", args.type_k]
    if args.type_v != "f16":
        argv += ["--cache-type-v", args.type_v]
    if args.flash_attn != "auto":
        argv += ["--flash-attn", "on" if args.flash_attn else "off"]
    if args.alias:
        argv += ["--alias", args.alias]
    if args.api_key_file:
        argv += ["--api-key-file", args.api_key_file]
    if args.embedding:
        argv.append("--embeddings")
        if args.pooling is not None:
            argv += ["--pooling", args.pooling]
    else:
        argv.append("--jinja")
    argv += ["--metrics", "--slots", "--cont-batching"]
    return argv
