"""Errors raised when a model is served over HTTP (an attached URL or a managed server).

Every failure of a request to a server ends in one of these, within the request's
timeout, never in a hang:

- :class:`ServerUnavailableError`: no answer (connection refused, unknown host, connect
  or read timeout, the connection dropped before any response). Names the URL, and the
  timeout when one expired.
- :class:`ServerResponseError`: the server answered, but not with what was asked (an HTTP
  error status with the server's own message, a wrong model name with the models it
  serves, a malformed JSON line with a snippet of it, a stream that ended before its
  ``finish_reason`` / ``[DONE]``).
- :class:`ResponseTooLargeError`: a :class:`ServerResponseError` for an answer over the
  client's size limits (an event-stream line or a JSON body); names the URL and the limit.
- :class:`ServerDiedError`: a managed server's process exited while a request was in
  flight (names its pid, port, model and exit status).

All derive from :class:`ServerError` (a ``RuntimeError``), so ``except ServerError``
catches any of them.
"""

from __future__ import annotations

__all__ = [
    "ResponseTooLargeError",
    "ServerDiedError",
    "ServerError",
    "ServerResponseError",
    "ServerUnavailableError",
    "snippet",
]

#: Characters of a server's body quoted in an error message.
SNIPPET_CHARS = 200


def snippet(text: str | bytes, limit: int = SNIPPET_CHARS) -> str:
    """A short, single-line quote of a server's output for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ServerError(RuntimeError):
    """A request to a model server failed.

    Attributes:
        url: The URL the request went to.
    """

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ServerUnavailableError(ServerError):
    """The server gave no answer: refused, unknown host, timed out, or dropped the connection.

    Attributes:
        url: The URL the request went to.
        timeout: The timeout (seconds) that expired, when the cause was a timeout.
    """

    def __init__(self, message: str, *, url: str, timeout: float | None = None) -> None:
        super().__init__(message, url=url)
        self.timeout = timeout


class ServerResponseError(ServerError):
    """The server answered with an error or with something that is not a valid response.

    Attributes:
        url: The URL the request went to.
        status: The HTTP status code (``None`` when the status was 200 but the body was
            malformed or truncated).
        server_message: The server's own error message, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.server_message = server_message


class ResponseTooLargeError(ServerResponseError):
    """The server's answer exceeded a size limit of the client (it was refused as soon as
    the limit was passed, so the client's memory stays bounded).

    Attributes:
        url: The URL the request went to.
        limit: The limit in bytes.
    """

    def __init__(self, message: str, *, url: str, limit: int, status: int | None = 200) -> None:
        super().__init__(message, url=url, status=status)
        self.limit = limit


class ServerDiedError(ServerUnavailableError):
    """A managed server's process exited while a request was in flight.

    Attributes:
        url: The URL the request went to.
        pid: The server's process id, when known.
        exit_status: Its exit status (negative: killed by that signal), when known.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        pid: int | None = None,
        exit_status: int | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.pid = pid
        self.exit_status = exit_status
