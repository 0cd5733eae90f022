"""Bounds on what one HTTP request to a model server may cost the client: a total
deadline (connect, headers and the whole streamed body) and a size cap on each line of an
event stream and on a non-streamed body.

:class:`Deadline` enforces the time limit even while a read is blocked: once the response
headers are in, a timer shuts the connection's socket down when the deadline passes, so a
server that sends a keep-alive comment every second (each read succeeds) cannot keep a
request alive. Before the headers, the request's own connect/read timeouts are the time
left.

Example:
    >>> list(bounded_lines([b"data: 1\\n\\nda", b"ta: 2\\n"], limit=64, too_long=ValueError))
    ['data: 1', '', 'data: 2']
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_SSE_LINE_BYTES",
    "Deadline",
    "bounded_lines",
    "read_bounded",
]

#: Bytes one line of a server-sent event stream may have (one event's JSON); a longer
#: line is refused as soon as this many bytes arrived without its end.
MAX_SSE_LINE_BYTES = 4 << 20
#: Bytes a non-streamed JSON answer (``/v1/models``, ``/tokenize``, ``/apply-template``)
#: may have.
MAX_BODY_BYTES = 64 << 20


class Deadline:
    """A total time limit for one request, started when it is created.

    Args:
        seconds: The limit (> 0).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds
        self.fired = False
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left (0 when passed)."""
        return max(self.end - time.monotonic(), 0.0)

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed (or its timer shut the connection down)."""
        return self.fired or time.monotonic() >= self.end

    @contextmanager
    def watching(self, response: Any) -> Iterator[None]:
        """While the block runs, shut ``response``'s socket down when the deadline passes
        (a blocked read then returns at once). Leaving the block disarms the timer before
        the connection can go back to the pool."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        armed = [True]

        def fire() -> None:
            with self._lock:
                if not armed[0]:
                    return
                self.fired = True
                if isinstance(sock, socket.socket):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:  # already closed
                        pass

        timer = threading.Timer(self.remaining(), fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            with self._lock:
                armed[0] = False
            timer.cancel()


def bounded_lines(
    chunks: Iterable[bytes],
    *,
    limit: int,
    too_long: Callable[[int], BaseException],
    check: Callable[[], None] | None = None,
) -> Iterator[str]:
    """The lines of a byte stream (ended by ``\\n``, ``\\r\\n`` or ``\\r``; UTF-8, bad
    bytes replaced), refusing a line over ``limit`` bytes as soon as that many arrived.

    Args:
        chunks: The body, in pieces as received.
        limit: Bytes a line may have.
        too_long: Builds the exception to raise, given ``limit``.
        check: Called after each piece (raises to stop, e.g. on a deadline).
    """
    buf = bytearray()
    for piece in chunks:
        buf += piece
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if end - start > limit + 1:
                raise too_long(limit)
            line = bytes(buf[start:end])
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            for part in line.split(b"\r"):
                yield part.decode("utf-8", "replace")
        del buf[:start]
        if len(buf) > limit:
            raise too_long(limit)
        if check is not None:
            check()
    if buf:
        for part in bytes(buf).rstrip(b"\r").split(b"\r"):
            yield part.decode("utf-8", "replace")


def read_bounded(
    chunks: Iterable[bytes],
    *,
    limit: int,
    too_long: Callable[[int], BaseException],
    check: Callable[[], None] | None = None,
) -> bytes:
    """The whole body, refused with ``too_long(limit)`` once more than ``limit`` bytes
    arrived; ``check`` is called after each piece."""
    parts: list[bytes] = []
    size = 0
    for piece in chunks:
        size += len(piece)
        if size > limit:
            raise too_long(limit)
        parts.append(piece)
        if check is not None:
            check()
    return b"".join(parts)
