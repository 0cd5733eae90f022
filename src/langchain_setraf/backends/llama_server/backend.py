"""The ``llama-server`` backend: a GGUF model served by the host's one managed llama.cpp server.

Every process that loads the same file with the same load options talks to the same server
(see :mod:`langchain_setraf.backends.llama_server.managed`): one copy of the weights and KV
cache on the host, and concurrent requests batched over ``n_parallel`` slots. A handle is an
:class:`~langchain_setraf.backends.openai_compat.HTTPHandle` bound to the server that
re-checks the server before each request and sends its API key (a new one at each
start, read from the private state): a server that died (or was stopped) is started
again on the next call, and a request in flight when it died fails with a
:class:`~langchain_setraf.backends.server_errors.ServerDiedError` naming the pid, port,
model and exit status. Closing the handle detaches this process; the server stops only if
this package started it and no other live process is attached.

Tokenization and chat rendering without a request read the GGUF file, as the ``gguf``
backend does.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final

from langchain_setraf.backends.base import (
    BackendBase,
    GenerationRequest,
    GenerationStats,
    LoadSpec,
)
from langchain_setraf.backends.gguf.file import read_gguf_header_cached
from langchain_setraf.backends.llama_server.managed import ManagedServer, ServerInfo, server_options
from langchain_setraf.backends.llama_server.server_memory import (
    read_allocated,
    server_memory_split,
)
from langchain_setraf.backends.openai_compat import HTTPHandle
from langchain_setraf.backends.options import LlamaServerOptions, options_from
from langchain_setraf.backends.server_errors import ServerDiedError, ServerError
from langchain_setraf.memory import MemorySplit

__all__ = ["LLAMA_SERVER_OPTIONS", "LlamaServerBackend", "ManagedServerHandle"]

#: Options of a ``llama-server`` spec: the server's own (they name the server) and the
#: client's ``request_timeout``: the fields of ``LlamaServerOptions``.
LLAMA_SERVER_OPTIONS: Final = tuple(f.name for f in dataclasses.fields(LlamaServerOptions))
#: Seconds a handle waits for a dying server's process to be gone before naming it.
_DEATH_WAIT: Final = 2.0


class ManagedServerHandle(HTTPHandle):
    """An :class:`HTTPHandle` on a managed server, restarted on demand."""

    def __init__(self, server: ManagedServer, info: ServerInfo, *, timeout: float) -> None:
        super().__init__(
            info.url + "/v1",
            info.alias,
            api_key=info.api_key,
            timeout=timeout,
            name="llama-server",
        )
        self.server = server
        self.info = info
        self._ensure_lock = threading.Lock()
        self._detached = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.url!r}, model={self.info.model_path!r})"

    def memory_split(self) -> MemorySplit:
        """The server's memory at most (its budget's estimate), split; the prompt cache at
        its cap."""
        return server_memory_split(
            read_gguf_header_cached(self.server.spec.path), server_options(self.server.spec)
        )

    def allocated_split(self) -> MemorySplit | None:
        """The host buffers the server's llama.cpp reported in its log (``None``: none left)."""
        return read_allocated(self.server.log_path)

    def close(self) -> None:
        """Detach this process from the server (stopping it when this process was the last
        client and this package started it) and close the connection pool."""
        with self._ensure_lock:
            detached, self._detached = self._detached, True
        try:
            if not detached:
                self.server.detach()
        finally:
            super().close()

    def _ensure_current(self) -> None:
        """Re-attach (starting a new server) when the one this handle knew is gone."""
        with self._ensure_lock:
            if self._detached:
                raise RuntimeError(f"{self!r} is closed")
            if self.server.is_current(self.info):
                return
            info = self.server.attach(again=True)
            if info.url != self.info.url:
                self.base_url = info.url + "/v1"
                self.root_url = info.url
            if info.api_key != self.info.api_key:  # a new server has a new key
                self.set_api_key(info.api_key)
            self.model = info.alias
            self.info = info

    def _before_request(self) -> None:
        self._ensure_current()

    def _stream(
        self,
        path: str,
        body: dict[str, Any],
        request: GenerationRequest,
        stats: GenerationStats,
        text_of: Any,
    ) -> Iterator[str]:
        self._ensure_current()  # the URL is fixed here, before the generator starts
        # the slot keeps the prompt's KV state and the next request evaluates only what
        # differs from it (llama-server's default, stated: the ERT chains count on it)
        body["cache_prompt"] = True
        return super()._stream(path, body, request, stats, text_of)

    def _post_json(self, url: str, body: Any, *, what: str) -> Any:
        self._ensure_current()
        if not url.startswith(self.root_url):  # the server moved: same path, new port
            url = self.root_url + "/" + url.split("/", 3)[3]
        return super()._post_json(url, body, what=what)

    def _on_transport_error(self, exc: ServerError) -> BaseException:
        info = self.info
        deadline = time.monotonic() + _DEATH_WAIT
        while self.server.is_current(info):
            if time.monotonic() > deadline:
                return exc  # the server lives: a transport error of its own
            time.sleep(0.05)
        record = self.server.exit_record(info.launch_id)
        status = record.get("status") if record else None
        how = self.server.exit_description(info.launch_id, wait=0.0)
        what = "llama-server" if info.engine == "llama-server" else f"llama-server ({info.engine})"
        err = ServerDiedError(
            f"{what} for {info.model_path}, pid {info.pid} on "
            f"127.0.0.1:{info.port}, exited during the request ({how}); the next call "
            "starts it again",
            url=exc.url,
            pid=info.pid,
            exit_status=status if isinstance(status, int) else None,
        )
        err.__cause__ = exc
        return err


class LlamaServerBackend(BackendBase):
    """The built-in ``llama-server`` backend (managed llama.cpp server per model + options)."""

    name = "llama-server"
    #: Generations on one handle run at once: the server batches them.
    concurrent = True
    llm_class: str | None = "langchain_setraf.llms:GGUFLLM"
    chat_class: str | None = "langchain_setraf.chat_models:ChatGGUF"
    #: ``init_embeddings("llama-server:/m.gguf")``: ``GGUFEmbeddings(server=True)`` (its
    #: own ``--embeddings`` server, see :mod:`.embedding`).
    embeddings_class: str | None = "langchain_setraf.embeddings:GGUFEmbeddings"
    model_field = "model_path"
    #: ``init_llm("llama-server:/m.gguf")`` (and ``init_embeddings``) builds the GGUF
    #: classes with ``server=True``.
    init_defaults: Mapping[str, Any] = MappingProxyType({"server": True})
    #: ``keep_alive`` is the server's own idle sleep (``--sleep-idle-seconds``), passed in the
    #: spec: the cache keeps the connection.
    owns_keep_alive = True

    def missing_requirements(self) -> str | None:
        """``None`` when a server engine is installed, else what to install."""
        from langchain_setraf.backends.llama_server.engine import (
            EngineNotFoundError,
            resolve_engine,
        )

        try:
            resolve_engine()
        except EngineNotFoundError as exc:
            return str(exc)
        return None

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        """Never: ``auto:`` URIs pick the in-process ``gguf`` backend for GGUF files."""
        return False

    def spec_for(
        self,
        model_path: str | os.PathLike[str],
        options: LlamaServerOptions | None = None,
        **kwargs: Any,
    ) -> LoadSpec:
        """The cache key of ``model_path`` served with these options: a
        :class:`~langchain_setraf.backends.options.LlamaServerOptions`, or its fields as
        keywords (``n_ctx`` per slot, ``n_parallel`` slots, the in-process GGUF options,
        ``sleep_idle_seconds``, ``cache_ram_mib``, ``request_timeout``); unset ones take
        its defaults.

        Raises:
            TypeError: an unknown option.
            ValueError: a bad value (named).
        """
        from langchain_setraf.backends.gguf.file import gguf_file_identity

        opts = options_from(LlamaServerOptions, options, **kwargs)
        return LoadSpec(self.name, gguf_file_identity(model_path), opts)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        """Host memory a new server needs at most; 0 when the spec's server is already
        running (its memory is already in use). See :meth:`server_bytes`."""
        if ManagedServer.for_spec(spec).is_running():
            return 0
        return self.server_bytes(spec)

    def server_bytes(self, spec: LoadSpec) -> int:
        """Host memory the spec's server holds at most, running or not: weights + KV cache
        for every slot + compute buffers (as in-process) + its prompt cache at its cap +
        its context checkpoints at theirs + the server's and its supervisor's own
        processes (see :mod:`~langchain_setraf.backends.llama_server.server_memory`)."""
        return self.server_split(spec).total

    def server_split(self, spec: LoadSpec) -> MemorySplit:
        """:meth:`server_bytes`, split into weights / KV cache / prompt cache / other."""
        return server_memory_split(read_gguf_header_cached(spec.path), server_options(spec))

    def load(self, spec: LoadSpec) -> ManagedServerHandle:
        """Start or reuse the spec's server, attach this process, and return a handle."""
        read_gguf_header_cached(spec.path)  # a bad file fails here, named
        server = ManagedServer.for_spec(spec)
        info = server.attach()
        return ManagedServerHandle(server, info, timeout=server_options(spec).request_timeout)

    # -- what the file says, without a request ---------------------------------------------
    def tokenize(self, spec: LoadSpec, text: str) -> list[int]:
        """Token ids of ``text`` by the file's vocabulary (special-token text parsed, no BOS)."""
        from langchain_setraf.backends.gguf.backend import GGUFBackend

        return GGUFBackend().tokenize(spec, text)

    def prompt_tokens(self, spec: LoadSpec, prompt: str) -> list[int]:
        """The tokens the server is given for ``prompt`` (one BOS at most)."""
        from langchain_setraf.backends.gguf.backend import GGUFBackend

        return GGUFBackend().prompt_tokens(spec, prompt)

    def render_chat(self, spec: LoadSpec, messages: list[dict[str, str]]) -> str:
        """``messages`` rendered with the file's chat template (header only)."""
        from langchain_setraf.backends.gguf.backend import GGUFBackend

        return GGUFBackend().render_chat(spec, messages)
