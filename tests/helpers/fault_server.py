"""Small real HTTP servers on 127.0.0.1 that misbehave on purpose, for the fault tests.

Each route is a function that gets the parsed request and the raw socket and writes
whatever bytes it likes (a bad status, HTML, a malformed or truncated event stream) or
nothing at all (a server that accepts and never answers). Every wait is bounded by the
server's ``stop`` event (set on exit) and a ceiling of :data:`MAX_HANG` seconds, so no test
can hang on a fault server.

Example:
    >>> with FaultServer({"/v1/completions": hang}) as srv:  # doctest: +SKIP
    ...     HTTPHandle(srv.base_url, "m", timeout=0.5)...
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The longest any route waits (seconds), even if the server is never stopped.
MAX_HANG = 30.0
#: Largest request accepted (bytes).
MAX_REQUEST = 1 << 20


@dataclass
class Request:
    """One request as the fault server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


Route = Callable[[Request, socket.socket, threading.Event], None]


@dataclass
class _State:
    routes: Mapping[str, Route]
    stop: threading.Event = field(default_factory=threading.Event)
    requests: list[Request] = field(default_factory=list)
    disconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _read_request(sock: socket.socket) -> Request | None:
    sock.settimeout(MAX_HANG)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_REQUEST:
            return None
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = min(int(headers.get("content-length", "0") or 0), MAX_REQUEST)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Request(method, path, headers, rest[:length])


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        state = self.server.state
        sock: socket.socket = self.request
        try:
            request = _read_request(sock)
        except (OSError, ValueError):
            return
        if request is None:
            return
        with state.lock:
            state.requests.append(request)
        route = state.routes.get(request.path.split("?", 1)[0], not_found_json)
        try:
            route(request, sock, state.stop)
        except OSError:  # the client went away: that is what some tests do on purpose
            with state.lock:
                state.disconnects += 1


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FaultServer:
    """A threaded loopback server answering each path with a route (404 JSON otherwise).

    Args:
        routes: ``{path: route}``; a route writes its answer to the socket.
    """

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self._state = _State(dict(routes))
        self._server = _TCPServer(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``root + "/v1"``)."""
        return self.root + "/v1"

    @property
    def requests(self) -> list[Request]:
        """Requests received so far."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def disconnects(self) -> int:
        """Routes that ended because the client closed the connection."""
        with self._state.lock:
            return self._state.disconnects

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._state.stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)


# -- building blocks ------------------------------------------------------------------------


def response(
    status: int, body: bytes, content_type: str = "application/json", *, close: bool = True
) -> bytes:
    """A complete HTTP/1.1 response."""
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(
        status, "Error"
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


SSE_HEAD_CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
SSE_HEAD_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """One HTTP chunk."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def event(payload: dict[str, Any] | str) -> bytes:
    """One SSE ``data:`` event."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {text}\n\n".encode()


def completion_event(text: str, finish: str | None = None) -> dict[str, Any]:
    """A ``/v1/completions`` stream chunk."""
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}


def chat_event(text: str, finish: str | None = None) -> dict[str, Any]:
    """A ``/v1/chat/completions`` stream chunk."""
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def usage_event(prompt: int, completion: int) -> dict[str, Any]:
    """The final usage chunk."""
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def wait(stop: threading.Event) -> None:
    """Block until the server stops (at most :data:`MAX_HANG` seconds)."""
    stop.wait(MAX_HANG)


# -- routes -----------------------------------------------------------------------------------


def not_found_json(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """llama-server's 404."""
    body = {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}
    sock.sendall(response(404, json.dumps(body).encode()))


def not_found_html(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """A web server's 404 page (the URL is not an API)."""
    page = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"
    sock.sendall(response(404, page, "text/html"))


def hang(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Accept, read the request, never answer."""
    wait(stop)


def error_500(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """HTTP 500 with an OpenAI-style JSON error."""
    body = {"error": {"message": "CUDA out of memory (injected)", "type": "server_error"}}
    sock.sendall(response(500, json.dumps(body).encode()))


def unauthorized(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """HTTP 401 unless the request carries ``Authorization: Bearer good-key``."""
    if req.headers.get("authorization") == "Bearer good-key":
        good_stream(req, sock, stop)
        return
    body = {"error": {"message": "Invalid API Key", "type": "authentication_error"}}
    sock.sendall(response(401, json.dumps(body).encode()))


def _text_event(req: Request, text: str, finish: str | None = None) -> dict[str, Any]:
    if req.path.endswith("/chat/completions"):
        return chat_event(text, finish)
    return completion_event(text, finish)


def good_stream(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """A well-formed stream: two pieces, a finish, usage, ``[DONE]`` (chunked), with the
    replica header."""
    head = SSE_HEAD_CHUNKED.replace(b"\r\n\r\n", b"\r\nx-setraf-replica: replica-7\r\n\r\n")
    sock.sendall(head)
    for payload in (
        _text_event(req, "Hello"),
        ": keep-alive ping",
        _text_event(req, " world"),
        _text_event(req, "", "stop"),
        usage_event(5, 2),
        "[DONE]",
    ):
        data = event(payload) if not str(payload).startswith(":") else b": ping\n\n"
        sock.sendall(chunk(data))
    sock.sendall(b"0\r\n\r\n")


def malformed_line(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """A stream whose second event is not JSON."""
    sock.sendall(SSE_HEAD_CLOSE + event(_text_event(req, "Hello")) + b'data: {"choices": [\n\n')


def not_sse(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """200 with a body that is not an event stream at all."""
    sock.sendall(SSE_HEAD_CLOSE + b"<html>proxy login page</html>\n")


def truncated_close(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """A close-delimited stream that ends (clean EOF) before any finish_reason."""
    sock.sendall(SSE_HEAD_CLOSE + event(_text_event(req, "Hello")) + event(_text_event(req, " wo")))


def truncated_chunked(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """A chunked stream whose connection drops in the middle of the body."""
    sock.sendall(SSE_HEAD_CHUNKED + chunk(event(_text_event(req, "Hello"))) + b"40\r\ndata: {")


def hang_midstream(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Start a stream, send one piece, then go silent."""
    sock.sendall(SSE_HEAD_CHUNKED + chunk(event(_text_event(req, "Hello"))))
    wait(stop)


def endless_stream(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Send a piece every 10 ms until the client disconnects (or the server stops)."""
    sock.sendall(SSE_HEAD_CHUNKED)
    for _ in range(int(MAX_HANG / 0.01)):
        if stop.wait(0.01):
            return
        sock.sendall(chunk(event(_text_event(req, "x"))))


def error_event(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """A stream that reports an error in a data event."""
    payload = {"error": {"code": 500, "message": "the context is full", "type": "server_error"}}
    sock.sendall(SSE_HEAD_CLOSE + event(_text_event(req, "Hel")) + event(payload))


def models_listing(*ids: str) -> Route:
    """A ``/v1/models`` route listing ``ids``."""

    def route(req: Request, sock: socket.socket, stop: threading.Event) -> None:
        body = {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}
        sock.sendall(response(200, json.dumps(body).encode()))

    return route


def model_not_found(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Ollama's 404 for an unknown model name."""
    model = req.json().get("model")
    body = {"error": {"message": f"model '{model}' not found", "type": "api_error"}}
    sock.sendall(response(404, json.dumps(body).encode()))


def close_without_answer(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Read the request, close the connection without a byte (a keep-alive connection the
    server dropped, or a server that died on the request)."""
    sock.close()


def first_dropped_then(route: Route) -> Route:
    """Close the first request's connection without an answer; answer later ones with
    ``route``."""
    calls: list[int] = []

    def dropping(req: Request, sock: socket.socket, stop: threading.Event) -> None:
        calls.append(1)
        if len(calls) == 1:
            sock.close()
        else:
            route(req, sock, stop)

    return dropping


def multiline_events(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """An event whose JSON is split over two ``data:`` lines (valid SSE), and a last event
    without its blank line before the end of a close-delimited body."""
    lines = json.dumps(_text_event(req, "Hi", "stop"), indent=1).splitlines()
    split = "".join(f"data: {line}\n" for line in lines) + "\n"
    sock.sendall(SSE_HEAD_CLOSE + split.encode() + b"data: [DONE]\n")


def pinging_stream(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """Start a stream, send one piece, then a ``: ping`` comment every second (each read
    succeeds, no event ever finishes) until the client leaves or :data:`MAX_HANG`."""
    sock.sendall(SSE_HEAD_CHUNKED + chunk(event(_text_event(req, "Hello"))))
    for _ in range(int(MAX_HANG)):
        if stop.wait(1.0):
            return
        sock.sendall(chunk(b": ping\n\n"))


#: Bytes of the line :func:`giant_line` sends (400 MB) and of each block it is sent in.
GIANT_LINE_BYTES = 400 * 10**6
_BLOCK = b"A" * (1 << 20)


def _send_giant(sock: socket.socket, stop: threading.Event, head: bytes) -> None:
    sock.sendall(head)
    sent = 0
    while sent < GIANT_LINE_BYTES and not stop.is_set():
        sock.sendall(_BLOCK)  # one shared block: the server's memory stays small
        sent += len(_BLOCK)
    sock.sendall(b"\n\n")


def giant_line(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """A close-delimited event stream whose first line is 400 MB long (``data: AAAA…``)."""
    _send_giant(sock, stop, SSE_HEAD_CLOSE + b"data: ")


def giant_body(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    """A close-delimited 200 JSON answer of 400 MB (no Content-Length, so only reading it
    tells its size)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    _send_giant(sock, stop, head + b'{"tokens": "')


def fail_first(times: int, status: int | None = 503) -> Route:
    """A route that answers HTTP ``status`` (a JSON error) to its first ``times`` requests,
    then a well-formed stream (:func:`good_stream`): a server that is briefly overloaded.
    ``status=None``: those requests are read and the connection closed without an answer."""
    lock = threading.Lock()
    seen = [0]

    def route(req: Request, sock: socket.socket, stop: threading.Event) -> None:
        with lock:
            seen[0] += 1
            failing = seen[0] <= times
        if failing and status is None:
            return  # the handler closes the connection: no answer at all
        if failing:
            body = {"error": {"message": "loading model (injected)", "type": "unavailable_error"}}
            sock.sendall(response(status, json.dumps(body).encode()))
            return
        good_stream(req, sock, stop)

    return route
