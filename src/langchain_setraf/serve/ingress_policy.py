"""What the OpenAI-compatible ingress accepts: who may call it, how big a body, how long.

:class:`IngressPolicy` is applied by every route of
:mod:`langchain_setraf.serve.openai_routes` before any model work:

- an API key (``Authorization: Bearer KEY``), compared in constant time against its
  SHA-256 (the key itself is never stored in the policy, nor sent to the Ray cluster);
  a missing or wrong key gets 401 with an OpenAI-style error body;
- a body size limit, checked from ``Content-Length`` and again while the body is read
  (a chunked body or a lying header cannot get past it): 413;
- a request timeout: 504 before the first byte, an in-band error event after it.

JSON schemas in a request are bounded by :mod:`langchain_setraf.schema_limits` (400).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "IngressPolicy",
    "RequestError",
    "key_digest",
]

#: Default body size limit: 1 MiB (a long chat fits in a few dozen kB).
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: Default time one request may take, generation included.
DEFAULT_REQUEST_TIMEOUT_S = 300.0


class RequestError(ValueError):
    """A request this server cannot honour (HTTP ``status``, OpenAI error ``param``/``code``)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code


def key_digest(key: str) -> str:
    """Hex SHA-256 of an API key (what a policy keeps instead of the key)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IngressPolicy:
    """Authentication and bounds of one ingress.

    Attributes:
        api_key_sha256: Hex SHA-256 of the API key clients must send (``None``: no key;
            only for an ingress bound to loopback, which the config enforces).
        max_body_bytes: Largest request body accepted (413 beyond).
        request_timeout_s: Longest a request may run (``None``: no limit); 504 beyond.
    """

    api_key_sha256: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.api_key_sha256 is not None and (
            len(self.api_key_sha256) != 64
            or any(c not in "0123456789abcdef" for c in self.api_key_sha256)
        ):
            raise ValueError("api_key_sha256 must be 64 lowercase hex digits (see key_digest)")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, got {self.max_body_bytes}")
        if self.request_timeout_s is not None and not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be positive, got {self.request_timeout_s}")

    @classmethod
    def with_key(cls, key: str | None, **kwargs: Any) -> IngressPolicy:
        """A policy requiring ``key`` (``None``: none), other bounds as given."""
        return cls(api_key_sha256=None if key is None else key_digest(key), **kwargs)

    def authorize(self, request: Request) -> None:
        """Check the request's ``Authorization: Bearer`` key.

        Raises:
            RequestError: 401 (``code`` ``invalid_api_key``) for a missing or wrong key.
        """
        if self.api_key_sha256 is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token.strip() if scheme.lower() == "bearer" else ""
        # digests of equal length: the comparison takes the same time for every key
        if not presented or not hmac.compare_digest(key_digest(presented), self.api_key_sha256):
            what = "wrong API key" if presented else "no API key"
            raise RequestError(
                f"{what}: send 'Authorization: Bearer <key>' with the key this server was "
                "configured with",
                status=401,
                code="invalid_api_key",
            )

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused beyond :attr:`max_body_bytes` before it is all read.

        Raises:
            RequestError: 413 when ``Content-Length`` or the bytes received exceed the limit;
                400 for a ``Content-Length`` that is not a number.
        """
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise RequestError(f"Content-Length {declared!r} is not a number")
            if int(declared) > limit:
                raise RequestError(
                    f"request body of {int(declared)} bytes is larger than the limit of "
                    f"{limit} bytes",
                    status=413,
                    code="request_too_large",
                )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(
                    f"request body is larger than the limit of {limit} bytes",
                    status=413,
                    code="request_too_large",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object (size-checked by :meth:`read_body`).

        Raises:
            RequestError: 413 (too large), 400 (not JSON, not an object, nested too deeply).
        """
        raw = await self.read_body(request)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"request body is not JSON ({exc})") from None
        except RecursionError:
            raise RequestError("request body is nested too deeply") from None
        if not isinstance(data, dict):
            raise RequestError("request body must be a JSON object")
        return data
