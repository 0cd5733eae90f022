"""Attach to a server that speaks the OpenAI-compatible API (llama-server, Ollama, vLLM,
the Ray Serve ingress): the ``openai`` backend and the HTTP handle it loads.

Generation streams over ``/v1/completions`` (raw prompt) and ``/v1/chat/completions``
(messages, rendered by the server's own chat template); a JSON constraint becomes the
request's ``response_format`` (llama-server compiles it to a grammar). Token counting and
chat rendering use llama.cpp's native ``/tokenize`` and ``/apply-template`` at the server
root; other servers have none, and those calls fail with a :class:`ServerResponseError`
naming the URL.

Every request ends within ``request_timeout``: a total deadline for the whole request
(connecting, at most 10 s of it, the headers and the whole streamed answer; a server that
sends a keep-alive comment every second does not extend it). What a server sends is
bounded too: one event-stream line at most
:data:`~langchain_setraf.backends.http_limits.MAX_SSE_LINE_BYTES`, a JSON answer at most
:data:`~langchain_setraf.backends.http_limits.MAX_BODY_BYTES`; more is refused, as soon as
the limit is passed, with a :class:`ResponseTooLargeError` naming the URL and the limit.
Every failure is a :class:`~langchain_setraf.backends.server_errors.ServerError`.

The API key is the one given to the class (``api_key=``, held by this process under an
opaque reference, :func:`api_key_ref`) or else read from the environment variable named by
``api_key_env`` at load time, and sent as ``Authorization: Bearer``, only to the origin it
is bound to (see :func:`api_key_for`: the origin in ``<api_key_env>_ORIGIN``, else loopback
servers only); a request to another origin is refused with :class:`APIKeyOriginError`
before anything is sent. The key is never part of a spec, a repr or a message.

:class:`HTTPHandle` is also the handle of the managed ``llama-server`` backend, which
overrides :meth:`HTTPHandle._before_request` (to re-ensure its server) and
:meth:`HTTPHandle._on_transport_error` (to name the server's pid and exit status).

A generation request the server could not take (no connection, or a 5xx before the first
byte of its answer) is sent again, after a short backoff, up to the request's
``max_retries`` times (the caller's ``max_retries``); a 4xx, a timeout or a stream cut
after it began is not.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import httpx

from langchain_setraf.backends.base import (
    LLAMA_SAMPLING_PARAMS,
    BackendBase,
    GenerationRequest,
    GenerationStats,
    LoadSpec,
    backoff_seconds,
)
from langchain_setraf.backends.http_limits import (
    MAX_BODY_BYTES,
    MAX_SSE_LINE_BYTES,
    Deadline,
    bounded_lines,
    read_bounded,
)
from langchain_setraf.backends.options import OpenAIOptions, options_from
from langchain_setraf.backends.server_errors import (
    ResponseTooLargeError,
    ServerError,
    ServerResponseError,
    ServerUnavailableError,
    snippet,
)
from langchain_setraf.settings import DEFAULT_API_KEY_ENV

__all__ = [
    "API_KEY_ORIGIN_SUFFIX",
    "HTTP_PARAMS",
    "OPENAI_LOAD_OPTIONS",
    "APIKeyOriginError",
    "HTTPHandle",
    "OpenAICompatBackend",
    "api_key_for",
    "api_key_ref",
    "normalize_base_url",
    "options_api_key",
    "origin_of",
]

#: Sampling parameters an HTTP handle sends (only those set; ``top_k``, ``min_p`` and
#: ``repeat_penalty`` are llama.cpp's extensions of the OpenAI body).
HTTP_PARAMS = LLAMA_SAMPLING_PARAMS

#: Load options of the ``openai`` backend (the cache key, with the URL and model name).
OPENAI_LOAD_OPTIONS = ("request_timeout", "api_key_env", "api_key_ref")

#: Seconds to wait for a TCP connection (within the request's total deadline).
CONNECT_TIMEOUT = 10.0
#: Bytes of an error body read to quote it (the rest is never read).
_ERROR_BODY_LIMIT = 4096
#: Header a Ray Serve replica sets to say which replica answered.
REPLICA_HEADER = "x-setraf-replica"
#: ``<api_key_env>_ORIGIN`` names the one origin the key may be sent to.
API_KEY_ORIGIN_SUFFIX = "_ORIGIN"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class APIKeyOriginError(ValueError):
    """An API key from the environment would go to an origin it is not bound to (the
    request is refused before anything is sent)."""


def origin_of(url: str) -> str:
    """``scheme://host:port`` of an http(s) URL (host lower-cased, the default port made
    explicit), what an API key is bound to.

    Raises:
        ValueError: Not an http(s) URL with a host.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


_KEY_LOCK = threading.Lock()
#: Keys given to the classes (``api_key=``), by their opaque reference, and back.
_KEYS_BY_REF: dict[str, str] = {}
_REFS_BY_KEY: dict[str, str] = {}


def api_key_ref(api_key: str) -> str:
    """An opaque reference to ``api_key`` for a spec (``"key-"`` and random hex, the same
    for the same key in this process): the spec carries the reference, this process holds
    the key, so a spec's repr, ``describe()`` or JSON never contains it and two keys never
    share one cached handle.

    Raises:
        ValueError: ``api_key`` is empty.
    """
    if not api_key:
        raise ValueError("api_key must be a non-empty string (None: no key)")
    with _KEY_LOCK:
        ref = _REFS_BY_KEY.get(api_key)
        if ref is None:
            ref = f"key-{secrets.token_hex(8)}"
            _REFS_BY_KEY[api_key] = ref
            _KEYS_BY_REF[ref] = api_key
        return ref


def _key_of_ref(ref: str) -> str:
    with _KEY_LOCK:
        key = _KEYS_BY_REF.get(ref)
    if key is None:
        raise ValueError(f"api_key_ref={ref!r} names no key given to a class in this process")
    return key


def options_api_key(base_url: str, options: OpenAIOptions) -> str | None:
    """The API key attach ``options`` send to ``base_url``: the key their ``api_key_ref``
    names (a class's ``api_key=``), else the one in their ``api_key_env``, by the binding
    rule of :func:`api_key_for`.

    Raises:
        APIKeyOriginError: The key is set and not bound to ``base_url``'s origin.
        ValueError: ``api_key_ref`` names no key given in this process.
    """
    given = None if options.api_key_ref is None else _key_of_ref(options.api_key_ref)
    return api_key_for(base_url, options.api_key_env, api_key=given)


def api_key_for(
    base_url: str,
    api_key_env: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    api_key: str | None = None,
) -> str | None:
    """The API key to send to ``base_url``, by the binding rule.

    The key is ``api_key`` when given (a class's ``api_key=``), else the value of the
    variable named ``api_key_env``. It is bound to an origin (``scheme://host:port``) by
    the variable ``<api_key_env>_ORIGIN`` (e.g. ``SETRAF_API_KEY_ORIGIN=https://gpu-box:8443``;
    a path in it is ignored) and then sent to that origin only. A key without an origin
    variable is sent to loopback servers only (127.0.0.0/8, ``::1``, ``localhost``), never
    to a typed remote URL. No key: ``None``.

    Raises:
        APIKeyOriginError: A key is set and ``base_url`` is not the origin it may go to,
            or the origin variable is not an http(s) URL. Nothing is sent then: a server
            that needs no key is reached with ``api_key_env`` naming an unset variable.
    """
    env = os.environ if environ is None else environ
    if api_key is None and not api_key_env:
        return None
    target = origin_of(base_url)
    bind_var = (api_key_env or DEFAULT_API_KEY_ENV) + API_KEY_ORIGIN_SUFFIX
    if api_key is not None:
        key: str | None = api_key
        what = "the api_key given to the class"
        fix = f"to attach to {target} without a key, drop api_key (or give {target}'s own key)"
    else:
        key = env.get(api_key_env) if api_key_env else None
        what = f"the API key in {api_key_env}"
        fix = (
            f"to attach to {target} without that key, set api_key_env to the name of a "
            f"variable that holds {target}'s own key (or that is unset)"
        )
    if not key:
        return None
    bound = env.get(bind_var)
    if bound:
        try:
            allowed = origin_of(bound)
        except ValueError:
            raise APIKeyOriginError(
                f"{bind_var}={bound!r} is not an http(s) origin such as 'https://host:8443'"
            ) from None
        if allowed != target:
            raise APIKeyOriginError(
                f"{what} is bound to {allowed} ({bind_var}); refusing to send it to {target}: {fix}"
            )
        return key
    if _is_loopback(base_url):
        return key
    raise APIKeyOriginError(
        f"{what} is bound to no origin, so it goes to loopback servers "
        f"only; refusing to send it to {target}: set {bind_var}={target} if the key is "
        f"for that server, or {fix}"
    )


def normalize_base_url(url: str) -> str:
    """The OpenAI base URL for ``url``: ``http(s)://host[:port][/prefix]/v1``, no trailing
    slash (``/v1`` is appended when missing).

    Raises:
        ValueError: Not an ``http``/``https`` URL with a host, or it has a query/fragment.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"server_url must be an http(s) URL, got {url!r}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"server_url {url!r} is not an http(s) URL with a host "
            "(expected e.g. 'http://127.0.0.1:8080/v1')"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"server_url {url!r} must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError as exc:
        raise ValueError(f"server_url {url!r}: {exc}") from None
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _body_params(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(HTTP_PARAMS))
    if unknown:
        raise TypeError(
            f"unknown sampling parameter(s) for an HTTP server: {unknown}; "
            f"expected some of {list(HTTP_PARAMS)}"
        )
    return {k: v for k, v in params.items() if v is not None}


def _response_format(constraint: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The OpenAI ``response_format`` for a JSON constraint (``None``: free text)."""
    if constraint is None:
        return None
    if set(constraint) != {"schema"}:
        raise ValueError(
            f"a JSON constraint is {{'schema': dict | None}}, got keys {sorted(constraint)}"
        )
    schema = constraint["schema"]
    if schema is None:
        return {"type": "json_object"}
    if not isinstance(schema, dict):
        raise TypeError(
            f"a JSON constraint's schema must be a dict or None, got {type(schema).__name__}"
        )
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


class HTTPHandle:
    """A model served over HTTP, spoken to through its OpenAI-compatible API.

    Thread-safe: concurrent generations share one connection pool and run at once (the
    server batches them).

    Args:
        base_url: The OpenAI base URL (``/v1`` is appended when missing).
        model: The model name sent with each request; ``None``: the first one the server
            lists at ``/v1/models`` (asked once, on the first generation).
        api_key: Sent as ``Authorization: Bearer`` to ``base_url``'s server, the only
            origin a handle ever sends to (redirects are not followed); never shown in a
            repr or message. Whoever passes it decides it belongs to that server (the
            ``openai`` backend asks :func:`api_key_for`).
        timeout: Seconds one request may take in total: connecting (at most 10 s),
            the headers and the whole body, streamed or not.
        name: What messages call the server (``"server"``, ``"llama-server"``).

    Every answer is read within bounds: an event-stream line over
    :data:`~langchain_setraf.backends.http_limits.MAX_SSE_LINE_BYTES` or a JSON body over
    :data:`~langchain_setraf.backends.http_limits.MAX_BODY_BYTES` raises
    :class:`ResponseTooLargeError` as soon as that much arrived.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        name: str = "server",
    ) -> None:
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.base_url = normalize_base_url(base_url)
        self.root_url = self.base_url[: -len("/v1")]
        self.model = model
        self.timeout = float(timeout)
        self.name = name
        # no compressed answers: the size limits count the bytes that are kept
        headers = {"Accept-Encoding": "identity"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=min(CONNECT_TIMEOUT, self.timeout)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            follow_redirects=False,
            # a proxy from the environment (http_proxy) never carries loopback traffic;
            # a remote server may need it
            trust_env=not _is_loopback(self.base_url),
        )
        self._model_lock = threading.RLock()
        self._served: list[str] | None = None
        self._model_checked = False
        self._closed = False

    def __enter__(self) -> HTTPHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, model={self.model!r})"

    # -- ModelHandle ------------------------------------------------------------------------
    @property
    def estimated_bytes(self) -> int:
        """0: the model's memory is the server's, not this process's."""
        return 0

    def close(self) -> None:
        """Close the connection pool (the server is not touched)."""
        self._closed = True
        self._client.close()

    def set_api_key(self, api_key: str | None) -> None:
        """Send ``api_key`` as ``Authorization: Bearer`` from the next request on (``None``:
        no key); a managed server gets a new key at each restart."""
        if api_key:
            self._client.headers["Authorization"] = f"Bearer {api_key}"
        else:
            self._client.headers.pop("Authorization", None)

    # -- hooks for subclasses ----------------------------------------------------------------
    def _before_request(self) -> None:
        """Called before every request (the managed backend re-ensures its server here)."""

    def _on_transport_error(self, exc: ServerError) -> BaseException:
        """Map a failure that may mean the server went away (no answer, a dropped
        connection, a truncated stream) to the exception to raise. Returns ``exc``."""
        return exc

    # -- generation ---------------------------------------------------------------------------
    def generate(
        self, prompt: str, request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        """Stream a raw completion of ``prompt`` from ``/v1/completions``."""
        body: dict[str, Any] = {"prompt": prompt}
        return self._stream("/completions", body, request, stats, _completion_text)

    def chat(
        self, messages: list[dict[str, str]], request: GenerationRequest, stats: GenerationStats
    ) -> Iterator[str]:
        """Stream an answer to ``messages`` from ``/v1/chat/completions`` (the server
        renders them with its chat template)."""
        body: dict[str, Any] = {"messages": [dict(m) for m in messages]}
        return self._stream("/chat/completions", body, request, stats, _chat_text)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the server's tokenizer (llama.cpp's ``/tokenize``)."""
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token text parsed, no BOS) from ``/tokenize``."""
        data = self._post_json(
            self.root_url + "/tokenize",
            {"content": text, "add_special": False, "parse_special": True},
            what="/tokenize (llama.cpp's tokenizer endpoint)",
        )
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list):
            raise ServerResponseError(
                f"{self.name} at {self.root_url}/tokenize answered without a 'tokens' list: "
                f"{snippet(json.dumps(data))}",
                url=self.root_url + "/tokenize",
            )
        return [int(t) if isinstance(t, int) else int(t["id"]) for t in tokens]

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """``messages`` rendered by the server's chat template (llama.cpp's
        ``/apply-template``)."""
        url = self.root_url + "/apply-template"
        data = self._post_json(
            url,
            {"messages": [dict(m) for m in messages]},
            what="/apply-template (llama.cpp's chat-template endpoint)",
        )
        prompt = data.get("prompt") if isinstance(data, dict) else None
        if not isinstance(prompt, str):
            raise ServerResponseError(
                f"{self.name} at {url} answered without a 'prompt' string: "
                f"{snippet(json.dumps(data))}",
                url=url,
            )
        return prompt

    def served_models(self) -> list[str]:
        """The model ids the server lists at ``/v1/models`` (asked once per handle)."""
        with self._model_lock:
            if self._served is None:
                self._served = self._list_models()
            return list(self._served)

    # -- internals ----------------------------------------------------------------------------
    def _list_models(self) -> list[str]:
        url = self.base_url + "/models"
        data = self._request_json("GET", url, None, what="/v1/models")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ServerResponseError(
                f"{self.name} at {url} answered without a 'data' list: {snippet(json.dumps(data))}",
                url=url,
            )
        ids: list[str] = []
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                ids.append(entry["id"])
                ids.extend(a for a in entry.get("aliases") or () if isinstance(a, str))
        return ids

    def _model_for_request(self) -> str:
        """The model name to send: the one given (checked once against ``/v1/models``,
        since llama-server answers whatever name it is sent), or the server's first."""
        with self._model_lock:
            if self.model is None:
                served = self._served = self._list_models()
                if not served:
                    raise ServerResponseError(
                        f"{self.name} at {self.base_url} lists no model at /v1/models; "
                        "name one with server_model=",
                        url=self.base_url + "/models",
                    )
                self.model = served[0]
                self._model_checked = True
            if not self._model_checked:
                try:
                    served = self.served_models()
                except ServerResponseError:  # no usable listing: the server's answer will tell
                    served = self._served = []
                self._model_checked = True
                if served and not _is_served(self.model, served):
                    raise ServerResponseError(
                        f"{self.name} at {self.base_url} does not serve model "
                        f"{self.model!r}; it serves: {_listing(served)}",
                        url=self.base_url + "/models",
                    )
            return self.model

    def _wrong_model_error(self, status: int, server_message: str, url: str) -> ServerError | None:
        """A clearer error when a 400/404 comes from a model name the server does not serve."""
        if self.model is None:
            return None
        try:
            served = self.served_models()
        except ServerError:
            return None
        if not served or _is_served(self.model, served):
            return None
        return ServerResponseError(
            f"{self.name} at {self.base_url} does not serve model {self.model!r} "
            f"(HTTP {status}: {server_message}); it serves: {_listing(served)}",
            url=url,
            status=status,
            server_message=server_message,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _unavailable(self, exc: httpx.HTTPError, url: str) -> BaseException:
        """Map an httpx transport error to a :class:`ServerUnavailableError` (through the
        subclass hook)."""
        err: ServerError
        if isinstance(exc, httpx.ConnectTimeout):
            t = min(CONNECT_TIMEOUT, self.timeout)
            err = ServerUnavailableError(
                f"{self.name} at {url} did not accept a connection within {t:g} s",
                url=url,
                timeout=t,
            )
        elif isinstance(exc, httpx.TimeoutException):
            err = self._deadline_error(url)
        elif isinstance(exc, httpx.ConnectError):
            err = ServerUnavailableError(
                f"cannot connect to {self.name} at {url}: {exc or type(exc).__name__}",
                url=url,
            )
        else:
            err = ServerUnavailableError(
                f"{self.name} at {url} closed the connection without an answer "
                f"({type(exc).__name__}: {exc})",
                url=url,
            )
        err.__cause__ = exc
        return self._on_transport_error(err)

    def _deadline_error(self, url: str, streaming: bool = False) -> ServerUnavailableError:
        where = (
            "it stalled in the middle of a stream"
            if streaming
            else "it sent nothing in time: stuck or overloaded"
        )
        return ServerUnavailableError(
            f"{self.name} at {url} did not finish the request within request_timeout="
            f"{self.timeout:g} s (a total deadline: connecting, waiting and streaming "
            f"together); {where}",
            url=url,
            timeout=self.timeout,
        )

    def _too_large(self, url: str, what: str) -> Callable[[int], ResponseTooLargeError]:
        def error(limit: int) -> ResponseTooLargeError:
            return ResponseTooLargeError(
                f"{self.name} at {url} sent {what} over the client's limit of {limit:,} "
                "bytes; refused without reading the rest",
                url=url,
                limit=limit,
            )

        return error

    def _status_error(
        self, response: httpx.Response, url: str, *, check_model: bool = False
    ) -> ServerError:
        """The error for a non-200 response (reads the start of its body). With
        ``check_model``, a 400/404/422 is checked against the served models."""
        raw = self._read_bounded(response)
        message = _server_message(raw)
        status = response.status_code
        if check_model and status in (400, 404, 422):
            wrong = self._wrong_model_error(status, message, url)
            if wrong is not None:
                return wrong
        ctype = response.headers.get("content-type", "")
        hint = ""
        if status == 404:
            hint = " (wrong URL? the base URL should end in /v1)"
            if "html" in ctype:
                hint = " (an HTML page: is this the OpenAI-compatible API's base URL?)"
        elif status in (401, 403):
            hint = " (check the API key: api_key=, or the variable named by api_key_env)"
        return ServerResponseError(
            f"{self.name} at {url} answered HTTP {status}{hint}: {message}",
            url=url,
            status=status,
            server_message=message,
        )

    @staticmethod
    def _read_bounded(response: httpx.Response) -> bytes:
        """The first few KiB of an error body (a server may send a lot; the rest is
        never read)."""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _ERROR_BODY_LIMIT:
                break
        return b"".join(chunks)[:_ERROR_BODY_LIMIT]

    def _request_json(self, method: str, url: str, body: Any, *, what: str) -> Any:
        self._check_open()
        self._before_request()
        deadline = Deadline(self.timeout)
        response = self._send_stream(url, body, method, deadline=deadline)

        def check() -> None:
            if deadline.expired:
                raise self._on_transport_error(self._deadline_error(url))

        try:
            with deadline.watching(response):
                if response.status_code != 200:
                    error = self._status_error(response, url)
                    if response.status_code == 404:
                        raise ServerResponseError(
                            f"{self.name} at {self.root_url} has no {what}: {error}",
                            url=url,
                            status=404,
                        )
                    raise error
                too_large = self._too_large(url, "a JSON answer")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                    raise too_large(MAX_BODY_BYTES)
                raw = read_bounded(
                    response.iter_bytes(), limit=MAX_BODY_BYTES, too_long=too_large, check=check
                )
            if deadline.fired:  # the timer ended the body: it may be cut short
                raise self._on_transport_error(self._deadline_error(url))
        except httpx.HTTPError as exc:
            if deadline.expired:
                raise self._on_transport_error(self._deadline_error(url)) from exc
            raise self._unavailable(exc, url) from exc
        finally:
            response.close()
        try:
            return json.loads(raw)
        except ValueError:
            raise ServerResponseError(
                f"{self.name} at {url} answered with malformed JSON: {snippet(raw)!r}",
                url=url,
                status=200,
            ) from None

    def _post_json(self, url: str, body: Any, *, what: str) -> Any:
        return self._request_json("POST", url, body, what=what)

    def _stream(
        self,
        path: str,
        body: dict[str, Any],
        request: GenerationRequest,
        stats: GenerationStats,
        text_of: Any,
    ) -> Iterator[str]:
        """Validate the request now; the returned generator does the HTTP."""
        self._check_open()
        body.update(_body_params(request.params))
        if request.stop:
            body["stop"] = list(request.stop)
        response_format = _response_format(request.constraint)
        if response_format is not None:
            body["response_format"] = response_format
            if path == "/completions" and request.constraint is not None:
                # llama.cpp's server reads response_format on chat completions only; on
                # text completions its own field is json_schema (compiled to a grammar)
                body["json_schema"] = request.constraint.get("schema") or {"type": "object"}
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return self._stream_events(
            self.base_url + path, body, stats, text_of, retries=request.max_retries
        )

    def _stream_events(
        self,
        url: str,
        body: dict[str, Any],
        stats: GenerationStats,
        text_of: Any,
        *,
        retries: int = 0,
    ) -> Iterator[str]:
        self._before_request()
        body["model"] = stats.model = self._model_for_request()
        finished = done = started = False
        deadline = Deadline(self.timeout)
        response = self._send_stream(url, body, deadline=deadline, retries=retries)

        def check() -> None:
            if deadline.expired:
                raise self._on_transport_error(self._deadline_error(url, started))

        try:
            with deadline.watching(response):
                if response.status_code != 200:
                    raise self._status_error(response, url, check_model=True)
                started = True
                stats.served_by = response.headers.get(REPLICA_HEADER) or self.base_url
                lines = bounded_lines(
                    response.iter_bytes(),
                    limit=MAX_SSE_LINE_BYTES,
                    too_long=self._too_large(url, "an event-stream line"),
                    check=check,
                )
                for data in _sse_data(lines, url, self.name):
                    if data == "[DONE]":
                        done = True
                        break
                    chunk = _parse_chunk(data, url, self.name)
                    _take_usage(chunk, stats)
                    for choice in chunk.get("choices") or ():
                        text = text_of(choice)
                        reason = choice.get("finish_reason")
                        if reason:
                            stats.finish_reason = str(reason)
                            finished = True
                        if text:
                            yield text
                    check()
        except httpx.HTTPError as exc:
            if deadline.expired and not (done or finished):
                raise self._on_transport_error(self._deadline_error(url, started)) from exc
            if not started:
                raise self._unavailable(exc, url) from exc
            if finished and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
                return  # the answer was complete; only the end of the body was lost
            err: ServerError = self._truncated(url, f"{type(exc).__name__}: {exc}")
            if isinstance(exc, httpx.TimeoutException):
                err = self._deadline_error(url, started)
            err.__cause__ = exc
            raise self._on_transport_error(err) from exc
        finally:
            response.close()  # also when the caller closes the generator early
        if deadline.fired and not (done or finished):  # the timer ended the body cleanly
            raise self._on_transport_error(self._deadline_error(url, started))
        if not (done or finished):
            raise self._on_transport_error(self._truncated(url, "the connection was closed"))

    def _send_stream(
        self,
        url: str,
        body: Any,
        method: str = "POST",
        *,
        deadline: Deadline | None = None,
        retries: int = 0,
    ) -> httpx.Response:
        """Send a request and return the response once its headers are in (the body is
        streamed), within the time ``deadline`` leaves. A pooled keep-alive connection the
        server closed just before the request fails without any answer: that one case is
        retried, once. Up to ``retries`` more tries (the caller's ``max_retries``), after a
        short backoff that never passes the deadline, when the server cannot be reached or
        answers 5xx before the first byte of its answer."""
        deadline = deadline or Deadline(self.timeout)
        stale_retried = False
        attempt = 0
        while True:
            left = deadline.remaining()
            if left <= 0:
                raise self._on_transport_error(self._deadline_error(url))
            request = self._client.build_request(
                method,
                url,
                json=body,
                timeout=httpx.Timeout(left, connect=min(CONNECT_TIMEOUT, left)),
            )
            try:
                response = self._client.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if not stale_retried:
                    stale_retried = True
                    continue
                if attempt >= retries:
                    raise self._unavailable(exc, url) from exc
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt >= retries:
                    raise self._unavailable(exc, url) from exc
            except httpx.HTTPError as exc:
                raise self._unavailable(exc, url) from exc
            else:
                if response.status_code < 500 or attempt >= retries:
                    return response
                response.close()
            time.sleep(min(backoff_seconds(attempt), max(0.0, deadline.remaining())))
            attempt += 1

    def _truncated(self, url: str, why: str) -> ServerResponseError:
        return ServerResponseError(
            f"{self.name} at {url} ended the stream before a finish_reason or [DONE] "
            f"(truncated response: {why})",
            url=url,
            status=200,
        )


def _is_served(model: str, served: list[str]) -> bool:
    """Whether ``model`` is one of ``served`` (Ollama's ``name`` means ``name:latest``)."""
    return model in served or f"{model}:latest" in served


def _listing(served: list[str]) -> str:
    more = f" and {len(served) - 20} more" if len(served) > 20 else ""
    return ", ".join(repr(m) for m in served[:20]) + more


def _server_message(raw: bytes) -> str:
    """The error message in an error body (OpenAI ``{"error": {"message"}}``, llama.cpp,
    Ollama ``{"error": "..."}``, FastAPI ``{"detail"}``), else a snippet of the body."""
    try:
        data = json.loads(raw)
    except ValueError:
        return repr(snippet(raw)) if raw else "(empty body)"
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if isinstance(error, str):
            return error
        if error is not None:
            return snippet(json.dumps(error))
    return snippet(json.dumps(data))


def _sse_data(lines: Iterator[str], url: str, name: str) -> Iterator[str]:
    """The ``data`` of each server-sent event (its ``data:`` lines joined by newlines)."""
    data: list[str] = []
    for line in lines:
        if not line:  # end of an event
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment / keep-alive ping
        field, sep, value = line.partition(":")
        if not sep or field not in ("data", "event", "id", "retry", "error"):
            raise ServerResponseError(
                f"{name} at {url} sent a line that is not server-sent events: {snippet(line)!r}",
                url=url,
                status=200,
            )
        value = value[1:] if value.startswith(" ") else value
        if field == "error":  # llama.cpp reports a failure mid-stream as "error: {json}"
            raise ServerResponseError(
                f"{name} at {url} reported an error mid-stream: {_server_message(value.encode())}",
                url=url,
                status=200,
                server_message=value,
            )
        if field == "data":
            data.append(value)
    if data:  # the last event had no blank line after it
        yield "\n".join(data)


def _parse_chunk(data: str, url: str, name: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise ServerResponseError(
            f"{name} at {url} sent a malformed JSON event: {snippet(data)!r}", url=url, status=200
        ) from None
    if not isinstance(chunk, dict):
        raise ServerResponseError(
            f"{name} at {url} sent an event that is not a JSON object: {snippet(data)!r}",
            url=url,
            status=200,
        )
    if "error" in chunk:
        message = _server_message(data.encode())
        raise ServerResponseError(
            f"{name} at {url} reported an error mid-stream: {message}",
            url=url,
            status=200,
            server_message=message,
        )
    return chunk


def _take_usage(chunk: Mapping[str, Any], stats: GenerationStats) -> None:
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        stats.completion_tokens = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        if isinstance(cached, int) and not isinstance(cached, bool) and cached >= 0:
            stats.cached_tokens = cached


def _completion_text(choice: Mapping[str, Any]) -> str:
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _chat_text(choice: Mapping[str, Any]) -> str:
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


class OpenAICompatBackend(BackendBase):
    """The built-in ``openai`` backend: a model on a server, by URL.

    The spec's identity is ``(base_url, server_model or "")``; its options are
    ``request_timeout`` (the total deadline of each request), ``api_key_env`` (the NAME
    of the variable holding the key) and ``api_key_ref`` (the opaque reference of a key
    given to the class, :func:`api_key_ref`; it takes the place of the variable's key).

    The key goes only to the origin it is bound to (:func:`api_key_for`): the one named by
    ``<api_key_env>_ORIGIN`` (``SETRAF_API_KEY_ORIGIN=https://gpu-box:8443``), else
    loopback servers only. Loading a spec for any other origin while the key is set raises
    :class:`APIKeyOriginError` before anything is sent, so a URL typed by a user (the
    Streamlit app's model field) never receives the key.
    """

    name = "openai"
    #: Generations on one handle run at once: the server batches them.
    concurrent = True
    llm_class = "langchain_setraf.llms:GGUFLLM"
    chat_class = "langchain_setraf.chat_models:ChatGGUF"
    embeddings_class = "langchain_setraf.embeddings:GGUFEmbeddings"
    model_field = "server_url"
    #: ``init_chat_model("openai:http://host:8080/v1", model="name")``: ``model`` is the
    #: name sent to the server.
    init_aliases: Mapping[str, str] = MappingProxyType({"model": "server_model"})

    def missing_requirements(self) -> str | None:
        """``None``: httpx is a dependency of the package."""
        return None

    def accepts(self, path: str | os.PathLike[str]) -> bool:
        """Never: a URL is not picked by ``auto:`` (name the ``openai:`` backend)."""
        return False

    def spec_for(
        self,
        server_url: str,
        options: OpenAIOptions | None = None,
        *,
        server_model: str | None = None,
        **kwargs: Any,
    ) -> LoadSpec:
        """The cache key of a model at ``server_url`` (normalised to its ``/v1`` base)
        with these options (an :class:`~langchain_setraf.backends.options.OpenAIOptions`,
        or ``request_timeout`` / ``api_key_env`` / ``api_key_ref`` as keywords).

        Raises:
            TypeError: an unknown option.
            ValueError: a bad value (named).
        """
        base = normalize_base_url(server_url)
        if server_model is not None and (not isinstance(server_model, str) or not server_model):
            raise ValueError(f"server_model must be a non-empty string, got {server_model!r}")
        opts = options_from(OpenAIOptions, options, **kwargs)
        return LoadSpec(self.name, (base, server_model or ""), opts)

    def estimate_bytes(self, spec: LoadSpec) -> int:
        """0: the weights live in the server."""
        return 0

    def load(self, spec: LoadSpec) -> HTTPHandle:
        """A handle on the server (no request is made until the first generation).

        Raises:
            APIKeyOriginError: The key (``api_key_ref``'s, else the one in
                ``api_key_env``) is set and not bound to this server's origin (see
                :func:`api_key_for`).
        """
        base, model = spec.identity[0], spec.identity[1] or None
        opts = spec.options
        if not isinstance(opts, OpenAIOptions):
            raise TypeError(f"{spec.describe()}: expected OpenAI attach options")
        api_key = options_api_key(base, opts)
        return HTTPHandle(base, model, api_key=api_key, timeout=opts.request_timeout, name="server")

    def tokenize(self, spec: LoadSpec, text: str) -> list[int]:
        """Token ids of ``text`` by the server's tokenizer (llama.cpp's ``/tokenize``)."""
        handle = self.load(spec)
        try:
            return handle.tokenize(text)
        finally:
            handle.close()

    def render_chat(self, spec: LoadSpec, messages: list[dict[str, str]]) -> str:
        """``messages`` rendered by the server's chat template (``/apply-template``)."""
        handle = self.load(spec)
        try:
            return handle.render_chat(messages)
        finally:
            handle.close()


def _is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (127.0.0.0/8, ``::1`` or ``localhost``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
