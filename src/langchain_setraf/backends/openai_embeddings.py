"""Embeddings from any OpenAI-compatible ``/v1/embeddings`` (llama-server started with
``--embeddings``, vLLM, Ollama, a Ray Serve replica...), by URL.

The same client as the chat path (:class:`~langchain_setraf.backends.openai_compat.HTTPHandle`):
the API key bound to its origin, the total request deadline, bounded answers, and the same
errors (:class:`~langchain_setraf.ServerUnavailableError` when the server cannot be
reached or stalls, :class:`~langchain_setraf.ServerResponseError` for an error status or
an answer that is not one vector per text). The pooling, the normalisation on the server's
side and the longest text are the server's.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, ClassVar

from langchain_setraf.backends.base import BackendBase, LoadSpec
from langchain_setraf.backends.openai_compat import (
    HTTPHandle,
    OpenAICompatBackend,
    options_api_key,
)
from langchain_setraf.backends.options import OpenAIOptions
from langchain_setraf.backends.server_errors import ServerResponseError, snippet

__all__ = ["HTTPEmbeddingHandle", "OpenAIEmbeddingBackend", "parse_embeddings"]

_ATTACH = OpenAICompatBackend()


def parse_embeddings(data: Any, count: int, url: str, name: str = "server") -> list[list[float]]:
    """The vectors of an OpenAI ``/v1/embeddings`` answer, in input order.

    Raises:
        ServerResponseError: not one finite vector of one width per input.
    """

    def bad(why: str) -> ServerResponseError:
        return ServerResponseError(
            f"{name} at {url} answered {why}: {snippet(json.dumps(data)[:2000])}",
            url=url,
            status=200,
        )

    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise bad("without a 'data' list")
    if len(items) != count:
        raise bad(f"{len(items)} vectors for {count} texts")
    out: list[list[float] | None] = [None] * count
    width: int | None = None
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad(f"item {position} that is not an object")
        index = item.get("index", position)
        vector = item.get("embedding")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise bad(f"item {position} with index {index!r}")
        if out[index] is not None:
            raise bad(f"index {index} twice")
        if not isinstance(vector, list) or not vector:
            raise bad(f"item {position} without a list of numbers (encoding_format float)")
        if vector and isinstance(vector[0], list):
            raise bad(f"per-token vectors for item {position} (the server runs no pooling)")
        values = [x for x in vector if isinstance(x, int | float) and not isinstance(x, bool)]
        if len(values) != len(vector) or not all(math.isfinite(x) for x in values):
            raise bad(f"item {position} with values that are not finite numbers")
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise bad(f"vectors of {width} and {len(values)} numbers")
        out[index] = [float(x) for x in values]
    return [v for v in out if v is not None]


class HTTPEmbeddingHandle(HTTPHandle):
    """A model behind an OpenAI-compatible ``/v1/embeddings``. Thread-safe (the server
    batches concurrent requests)."""

    #: Fields added to every ``/v1/embeddings`` request body (a subclass's server-specific
    #: ones; none for an arbitrary server).
    extra_body: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dimensions = 0

    @property
    def dimensions(self) -> int:
        """Width of the vectors (0 until the server has answered once)."""
        return self._dimensions

    @property
    def max_tokens(self) -> int:
        """0: the server decides which text is too long (it answers with an error)."""
        return 0

    def embed(self, texts: list[str], *, truncate: bool) -> list[list[float]]:
        """POST ``texts`` to ``/v1/embeddings`` in one request.

        Raises:
            ValueError: ``truncate`` (the server decides; it cannot be asked to cut).
            ServerUnavailableError: the server cannot be reached or misses the deadline.
            ServerResponseError: an error status, or an answer that is not one vector per
                text.
        """
        if truncate:
            raise ValueError(f"{self.name} at {self.base_url}: truncate=True needs a model in "
                             "this process; a server applies its own limit")  # fmt: skip
        if not texts:
            return []
        url = self.base_url + "/embeddings"
        body = {
            "model": self._model_for_request(),
            "input": texts,
            "encoding_format": "float",
            **self.extra_body,
        }
        data = self._post_json(
            url, body, what="/v1/embeddings (a llama.cpp server needs --embeddings)"
        )
        vectors = parse_embeddings(data, len(texts), url, self.name)
        self._dimensions = len(vectors[0])
        return vectors

    def embedding_tokens(self, text: str) -> list[int]:
        """Token ids of ``text`` with the special tokens an embedding adds, from llama.cpp's
        ``/tokenize`` (``add_special``)."""
        url = self.root_url + "/tokenize"
        data = self._post_json(
            url,
            {"content": text, "add_special": True, "parse_special": False},
            what="/tokenize (llama.cpp's tokenizer endpoint)",
        )
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            raise ServerResponseError(
                f"{self.name} at {url} answered without a list of token ids: "
                f"{snippet(json.dumps(data)[:2000])}",
                url=url,
                status=200,
            )
        return [int(t) for t in tokens]


class OpenAIEmbeddingBackend(BackendBase):
    """The built-in ``openai-embeddings`` backend: ``/v1/embeddings`` at a URL.

    The spec is the ``openai`` backend's (the base URL and model name; ``request_timeout``
    and ``api_key_env``) under this backend's name.
    """

    name = "openai-embeddings"
    #: Calls on one handle run at once: the server batches them.
    concurrent = True
    model_field = "server_url"

    def missing_requirements(self) -> str | None:
        """``None``: httpx is a dependency of the package."""
        return None

    def spec_for(
        self,
        server_url: str,
        options: OpenAIOptions | None = None,
        *,
        server_model: str | None = None,
        **kwargs: Any,
    ) -> LoadSpec:
        """The cache key of the embedding model at ``server_url`` (see
        :meth:`OpenAICompatBackend.spec_for`).

        Raises:
            TypeError: an unknown option.
            ValueError: a bad value (named).
        """
        spec = _ATTACH.spec_for(server_url, options, server_model=server_model, **kwargs)
        return dataclasses.replace(spec, backend=self.name)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        """0: the weights live in the server."""
        return 0

    def load(self, spec: LoadSpec) -> HTTPEmbeddingHandle:
        """A handle on the server (no request is made until the first call).

        Raises:
            APIKeyOriginError: The key (``api_key_ref``'s, else the one in
                ``api_key_env``) is set and not bound to this server's origin.
        """
        base, model = spec.identity[0], spec.identity[1] or None
        opts = spec.options
        if not isinstance(opts, OpenAIOptions):
            raise TypeError(f"{spec.describe()}: expected OpenAI attach options")
        api_key = options_api_key(base, opts)
        return HTTPEmbeddingHandle(
            base, model, api_key=api_key, timeout=opts.request_timeout, name="server"
        )

    def prompt_tokens(self, spec: LoadSpec, text: str) -> list[int]:
        """The token ids the server embeds ``text`` as (llama.cpp's ``/tokenize``)."""
        handle = self.load(spec)
        try:
            return handle.embedding_tokens(text)
        finally:
            handle.close()
