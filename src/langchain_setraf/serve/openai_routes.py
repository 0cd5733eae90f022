"""OpenAI-compatible HTTP routes over the package's LangChain classes.

One :class:`ModelService` holds one chat model and its ``LLM`` twin (one cache entry:
one load) and translates:

- ``POST /v1/chat/completions``: messages, tools, ``tool_choice``, ``response_format``
  (``json_schema`` -> ``{"type": "json_schema", "schema": S}``, ``json_object`` ->
  ``{"type": "json_mode"}``), sampling, ``stop``, streaming (SSE) with usage;
- ``POST /v1/completions``: a raw prompt, streaming included;
- ``GET /v1/models``, ``GET /health``;
- ``POST /tokenize`` and ``POST /apply-template`` (llama.cpp's own routes, which the
  attach client uses to count tokens and render prompts).

Every response names the replica that answered: header ``x-setraf-replica``, and in the
JSON ``system_fingerprint`` and a ``setraf`` object. A request field this module does not
implement is refused (HTTP 400 naming it), never ignored.

Every route but ``/health`` applies the service's
:class:`~langchain_setraf.serve.ingress_policy.IngressPolicy` first (API key: 401; body
size: 413), bounds the JSON schemas of ``response_format`` and tools
(:func:`~langchain_setraf.schema_limits.check_schema`: 400, before any grammar is built),
and runs the generation under the request timeout (504) and until the client goes away
(the generation is cancelled: its slot is free by the next token). A server error (500)
says only ``internal error`` and a request id; the exception is logged with that id.

The routes are plain async functions of a service and a ``Request``: the Ray Serve
ingress (:mod:`langchain_setraf.serve.ray_app`) calls them from its replica class, and
:func:`standalone_app` mounts them on a plain FastAPI app (tests, one process).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from langchain_setraf.backends.base import LLAMA_SAMPLING_PARAMS
from langchain_setraf.chat_base import LocalChatModel
from langchain_setraf.llm_base import CachedLLM
from langchain_setraf.schema_limits import check_schema
from langchain_setraf.serve.ingress_policy import IngressPolicy, RequestError

__all__ = [
    "REPLICA_HEADER",
    "REQUEST_ID_HEADER",
    "ModelService",
    "ReplicaInfo",
    "RequestError",
    "apply_template",
    "chat_completions",
    "completions",
    "health",
    "models",
    "standalone_app",
    "tokenize",
]

REPLICA_HEADER = "x-setraf-replica"
#: Header naming the request id that a server error's log record carries.
REQUEST_ID_HEADER = "x-request-id"
#: Seconds past its timeout after which a request still running means a wedged replica.
WEDGE_GRACE_S = 30.0

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Sampling fields passed to the classes as per-call overrides (they refuse what their
#: backend lacks, which becomes a 400): the package's one sampling vocabulary.
_SAMPLING = LLAMA_SAMPLING_PARAMS
_COMMON = {"model", "stream", "stream_options", "stop", "n", "user", "max_completion_tokens"}
_CHAT_FIELDS = {"messages", "tools", "tool_choice", "response_format", "parallel_tool_calls"}
_COMPLETION_FIELDS = {"prompt", "echo", "logprobs", "suffix", "best_of"}
#: Completion fields accepted only at their neutral values.
_COMPLETION_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "echo": (None, False),
    "logprobs": (None,),
    "suffix": (None, ""),
    "best_of": (None, 1),
}


class ClientGone(Exception):
    """The client disconnected before its answer was ready (the generation is cancelled)."""


@dataclass(frozen=True)
class ReplicaInfo:
    """Who answers: the Ray replica id (or ``local-<pid>`` outside Ray), node and pid."""

    replica_id: str
    node: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the ``setraf`` field of every response)."""
        return {"replica": self.replica_id, "node": self.node, "pid": self.pid}


class ModelService:
    """One model served over HTTP: a chat model and an ``LLM`` sharing one cache entry.

    Args:
        chat: A chat model of this package (``ChatGGUF``, ``ChatTransformers``…).
        llm: The matching ``LLM`` (same model and load options), for ``/v1/completions``.
        model_name: The name served at ``/v1/models`` and required in requests.
        replica: Who answers (put in every response).
        details: Extra JSON about the model for ``/v1/models`` (backend, estimate; no
            paths: every authenticated client sees it).
        policy: API key, body size limit and request timeout (default: no key, 1 MiB,
            300 s).
    """

    def __init__(
        self,
        chat: LocalChatModel,
        llm: CachedLLM,
        model_name: str,
        replica: ReplicaInfo,
        details: Mapping[str, Any] | None = None,
        policy: IngressPolicy | None = None,
    ) -> None:
        self.chat = chat
        self.llm = llm
        self.model_name = model_name
        self.replica = replica
        self.details = dict(details or {})
        self.policy = policy or IngressPolicy()
        self.created = int(time.time())
        self._slots: dict[int, float] = {}  # in-flight generations: id -> start (monotonic)
        self._slot_ids = itertools.count()

    # -- in-flight generations --------------------------------------------------------------
    @property
    def inflight(self) -> int:
        """Generations running now (a cancelled one counts until it has really stopped)."""
        return len(self._slots)

    def begin(self) -> int:
        """Count a generation as running; returns its slot id for :meth:`end`."""
        slot = next(self._slot_ids)
        self._slots[slot] = time.monotonic()
        return slot

    def end(self, slot: int) -> None:
        """The generation of ``slot`` has stopped."""
        self._slots.pop(slot, None)

    def wedged(self) -> str | None:
        """Why this replica is stuck (a generation running :data:`WEDGE_GRACE_S` past the
        request timeout: its cancellation did not take), or ``None``."""
        timeout = self.policy.request_timeout_s
        if timeout is None or not self._slots:
            return None
        age = time.monotonic() - min(self._slots.values())
        if age > timeout + WEDGE_GRACE_S:
            return (
                f"a generation has run {age:.0f} s, past the request timeout of {timeout:.0f} s "
                f"by more than {WEDGE_GRACE_S:.0f} s"
            )
        return None

    def deadline(self) -> float | None:
        """The event-loop time by which a request starting now must end."""
        timeout = self.policy.request_timeout_s
        return None if timeout is None else asyncio.get_running_loop().time() + timeout

    def meta(self, served_by: Any = None) -> dict[str, Any]:
        """The ``setraf`` field: replica, node, pid (and the engine behind it, if any)."""
        out = self.replica.as_dict()
        if served_by:
            out["served_by"] = served_by
        return out

    def headers(self) -> dict[str, str]:
        """Headers of every response."""
        return {REPLICA_HEADER: self.replica.replica_id}

    def check_model(self, requested: Any) -> None:
        """Refuse a request for another model (404, the served one named)."""
        if requested is None:
            return
        if requested != self.model_name:
            raise RequestError(
                f"model {requested!r} is not served here; served: [{self.model_name!r}]",
                param="model",
                status=404,
            )


# -- request parsing ------------------------------------------------------------------------------
def _check_fields(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(
            f"unsupported request field(s): {', '.join(unknown)} (supported: "
            f"{', '.join(sorted(allowed))})",
            param=unknown[0],
        )


def _overrides(body: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: body[k] for k in _SAMPLING if body.get(k) is not None}
    mct = body.get("max_completion_tokens")
    if mct is not None:
        if "max_tokens" in out and out["max_tokens"] != mct:
            raise RequestError(
                "max_tokens and max_completion_tokens differ", param="max_completion_tokens"
            )
        out["max_tokens"] = mct
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RequestError(f"{k} must be a number, got {v!r}", param=k)
    if "max_tokens" in out and (not isinstance(out["max_tokens"], int) or out["max_tokens"] < 1):
        raise RequestError("max_tokens must be a positive integer", param="max_tokens")
    return out


def _stop(body: Mapping[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop) or None
    raise RequestError("stop must be a string or a list of strings", param="stop")


def _common(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """Checks shared by both routes; returns (stream, include_usage)."""
    n = body.get("n")
    if n not in (None, 1):
        raise RequestError("only n=1 is supported", param="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be true or false", param="stream")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, Mapping) or set(opts) - {"include_usage"}:
            raise RequestError("stream_options supports only include_usage", param="stream_options")
        include_usage = bool(opts.get("include_usage"))
    return stream, include_usage


def _text_content(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise RequestError(
                    f"{where}[{i}]: only text content parts are supported, got {kind!r}",
                    param=where,
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise RequestError(f"{where}: content must be a string or a list of parts", param=where)


def to_langchain_messages(raw: Any) -> list[BaseMessage]:
    """OpenAI chat messages -> LangChain messages (400 naming the bad one)."""
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list", param="messages")
    out: list[BaseMessage] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, Mapping):
            raise RequestError(f"{where} must be an object", param=where)
        role = m.get("role")
        content = _text_content(m.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            out.append(SystemMessage(content=content))
        elif role == "user":
            out.append(HumanMessage(content=content))
        elif role == "assistant":
            calls = []
            for j, tc in enumerate(m.get("tool_calls") or []):
                fn = tc.get("function") if isinstance(tc, Mapping) else None
                if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                    raise RequestError(f"{where}.tool_calls[{j}] needs function.name", param=where)
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError as exc:
                    raise RequestError(
                        f"{where}.tool_calls[{j}].function.arguments is not JSON ({exc.msg})",
                        param=where,
                    ) from None
                calls.append({"name": fn["name"], "args": args, "id": tc.get("id")})
            out.append(AIMessage(content=content, tool_calls=calls))
        elif role == "tool":
            out.append(_tool_message(m, content, where))
        else:
            raise RequestError(
                f"{where}.role {role!r} is not one of system, developer, user, assistant, tool",
                param=where,
            )
    return out


#: How the chat classes write a tool result into the prompt (``_tools.messages_for_template``).
_RESULT_TEXT = re.compile(r"Result of (?P<name>[^:\n]+?)(?P<error> \(error\))?: (?P<rest>.*)", re.S)


def _tool_message(m: Mapping[str, Any], content: str, where: str) -> ToolMessage:
    """A tool result. Without ``tool_call_id`` it comes from a client that writes results
    as prompt text (this package's attach client, llama.cpp-style): ``Result of NAME: …``
    is parsed back so the replica renders exactly the same prompt text."""
    call_id = m.get("tool_call_id")
    name = m.get("name")
    if call_id is not None and not isinstance(call_id, str):
        raise RequestError(f"{where}.tool_call_id must be a string", param=where)
    if name is not None and not isinstance(name, str):
        raise RequestError(f"{where}.name must be a string", param=where)
    status = "success"
    if call_id is None:
        match = _RESULT_TEXT.fullmatch(content)
        if match:
            name, content = match["name"], match["rest"]
            status = "error" if match["error"] else "success"
    return ToolMessage(content=content, tool_call_id=call_id or "", name=name, status=status)


def _response_format(raw: Any) -> dict[str, Any] | None:
    """OpenAI ``response_format`` -> the format the chat classes accept."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_mode"}
    if kind == "json_schema":
        spec = raw.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise RequestError(
                "response_format json_schema needs json_schema.schema (an object)",
                param="response_format",
            )
        _check_schema(schema, "response_format.json_schema.schema", "response_format")
        return {"type": "json_schema", "schema": dict(schema)}
    raise RequestError(
        f"response_format type {kind!r} is not one of text, json_object, json_schema",
        param="response_format",
    )


def _check_schema(schema: Any, what: str, param: str) -> None:
    """400 for a schema beyond the limits (before any grammar is built)."""
    try:
        check_schema(schema, what=what)
    except ValueError as exc:
        raise RequestError(str(exc), param=param) from None


def _bound_chat(service: ModelService, body: Mapping[str, Any]) -> Any:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    fmt = _response_format(body.get("response_format"))
    if body.get("parallel_tool_calls") is False:
        raise RequestError(
            "parallel_tool_calls=false is not supported", param="parallel_tool_calls"
        )
    if tools:
        if not isinstance(tools, list) or not all(
            isinstance(t, Mapping)
            and t.get("type") == "function"
            and isinstance(t.get("function"), Mapping)
            and isinstance(t["function"].get("name"), str)
            for t in tools
        ):
            raise RequestError(
                "tools must be a list of function tools ({'type': 'function', 'function': "
                "{'name': …, 'parameters': …}})",
                param="tools",
            )
        for i, tool in enumerate(tools):
            params = tool["function"].get("parameters")
            if params is not None:
                _check_schema(params, f"tools[{i}].function.parameters", "tools")
        if fmt is not None and choice != "none":
            raise RequestError(
                "tools and response_format together need tool_choice 'none'",
                param="response_format",
            )
        extra = {"response_format": fmt} if fmt is not None else {}
        try:
            return service.chat.bind_tools(tools, tool_choice=choice, **extra)
        except ValueError as exc:
            raise RequestError(str(exc), param="tool_choice") from None
    if choice not in (None, "none", "auto"):
        raise RequestError("tool_choice needs tools", param="tool_choice")
    if fmt is not None:
        return service.chat.bind(response_format=fmt)
    return service.chat


# -- response building ----------------------------------------------------------------------------
def _usage(meta: Any) -> dict[str, int] | None:
    if not meta:
        return None
    p = int(meta.get("input_tokens") or 0)
    c = int(meta.get("output_tokens") or 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _openai_tool_calls(msg: AIMessage) -> list[dict[str, Any]]:
    return [
        {
            "id": tc.get("id") or f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": tc["name"], "arguments": json.dumps(tc["args"])},
        }
        for tc in msg.tool_calls
    ]


def _sse(obj: Mapping[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _request_id() -> str:
    return uuid.uuid4().hex[:16]


def _error_parts(exc: BaseException, service: ModelService, rid: str) -> tuple[int, Any]:
    """HTTP status and OpenAI-style body of a failure; a server error is logged with the
    request id, and its body carries the id, never the exception's text."""
    if isinstance(exc, RequestError):
        status, kind, param, code = exc.status, "invalid_request_error", exc.param, exc.code
        if status == 401:
            kind = "authentication_error"
        elif status == 504:
            kind = "timeout"
        message = str(exc)
    elif isinstance(exc, ValueError):  # the classes refuse bad arguments with ValueError
        status, kind, param, code, message = 400, "invalid_request_error", None, None, str(exc)
    else:
        log.error("request %s failed", rid, exc_info=exc)
        status, kind, param, code = 500, "server_error", None, None
        message = f"internal error (request id {rid}; the server's log has the details)"
    body = {
        "error": {"message": message, "type": kind, "param": param, "code": code},
        "setraf": {**service.meta(), "request_id": rid},
    }
    return status, body


def error_response(exc: BaseException, service: ModelService, rid: str | None = None) -> Response:
    """An OpenAI-style error (400/401/404/413/504 for bad requests, 500 otherwise)."""
    rid = rid or _request_id()
    headers = {**service.headers(), REQUEST_ID_HEADER: rid}
    if isinstance(exc, ClientGone):  # nobody reads it: nginx's "client closed request"
        return Response(status_code=499, headers=headers)
    status, body = _error_parts(exc, service, rid)
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def _timeout_error(service: ModelService) -> RequestError:
    return RequestError(
        f"the request did not finish within the server's timeout of "
        f"{service.policy.request_timeout_s:g} s",
        status=504,
        code="timeout",
    )


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (``http.disconnect``); never when it cannot tell."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a server without disconnect messages: wait forever (cancelled)
        await asyncio.Event().wait()


async def _bounded(
    service: ModelService, request: Request, work: Awaitable[_T], deadline: float | None
) -> _T:
    """Await ``work`` until it is done, the deadline passes (504) or the client goes
    (:class:`ClientGone`); in the last two cases it is cancelled, which stops the
    generation at its next token, and this returns once it has stopped."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
    try:
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:  # also when this request is cancelled (Ray cancels it when the client goes)
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # the worker thread has seen the stop flag
    if task in done:
        return task.result()
    if watcher in done:
        raise ClientGone()
    raise _timeout_error(service)


async def _stream_response(
    service: ModelService,
    events: AsyncIterator[str],
    first: str | None,
    deadline: float | None,
    rid: str,
    slot: int,
) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield first
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                except StopAsyncIteration:
                    break
                yield event
        except TimeoutError:  # after the 200: tell the client in-band, no [DONE]
            yield _sse(_error_parts(_timeout_error(service), service, rid)[1])
        except Exception as exc:
            yield _sse(_error_parts(exc, service, rid)[1])
        finally:
            try:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                service.end(slot)

    headers = {**service.headers(), REQUEST_ID_HEADER: rid}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def _start(events: AsyncIterator[str]) -> str | None:
    """First event, so that errors before any text become a proper HTTP error."""
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


async def _first_event(
    service: ModelService,
    request: Request,
    events: AsyncIterator[str],
    deadline: float | None,
    slot: int,
) -> str | None:
    """:func:`_start` under the deadline and the client's presence; on failure the
    generation is closed and its slot freed."""
    try:
        return await _bounded(service, request, _start(events), deadline)
    except BaseException:
        try:
            await events.aclose()  # type: ignore[attr-defined]
        finally:
            service.end(slot)
        raise


# -- routes ---------------------------------------------------------------------------------------
async def _admit(service: ModelService, request: Request, deadline: float | None) -> dict[str, Any]:
    """API key, then the body: size-limited, read within the deadline, a JSON object."""
    service.policy.authorize(request)
    try:
        async with asyncio.timeout_at(deadline):
            return await service.policy.read_json(request)
    except TimeoutError:
        raise _timeout_error(service) from None


def _headers(service: ModelService, rid: str) -> dict[str, str]:
    return {**service.headers(), REQUEST_ID_HEADER: rid}


async def chat_completions(service: ModelService, request: Request) -> Response:
    """``POST /v1/chat/completions``."""
    rid = _request_id()
    deadline = service.deadline()
    try:
        body = await _admit(service, request, deadline)
        _check_fields(body, _COMMON | _CHAT_FIELDS | set(_SAMPLING))
        service.check_model(body.get("model"))
        stream, include_usage = _common(body)
        messages = to_langchain_messages(body.get("messages"))
        overrides = _overrides(body)
        stop = _stop(body)
        runnable = _bound_chat(service, body)
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        slot = service.begin()
        if not stream:
            try:
                work = runnable.ainvoke(messages, stop=stop, **overrides)
                msg = await _bounded(service, request, work, deadline)
            finally:
                service.end(slot)
            return JSONResponse(_chat_json(service, cid, msg), headers=_headers(service, rid))
        events = _chat_events(service, cid, runnable, messages, stop, overrides, include_usage)
        first = await _first_event(service, request, events, deadline, slot)
    except Exception as exc:
        return error_response(exc, service, rid)
    return await _stream_response(service, events, first, deadline, rid, slot)


def _chat_json(service: ModelService, cid: str, msg: AIMessage) -> dict[str, Any]:
    meta = msg.response_metadata or {}
    message: dict[str, Any] = {"role": "assistant", "content": msg.content or None}
    finish = meta.get("finish_reason") or "stop"
    if msg.tool_calls:
        message["tool_calls"] = _openai_tool_calls(msg)
        message["content"] = None
        finish = "tool_calls"
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": service.model_name,
        "system_fingerprint": service.replica.replica_id,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(msg.usage_metadata),
        "setraf": service.meta(meta.get("served_by")),
    }


async def _chat_events(
    service: ModelService,
    cid: str,
    runnable: Any,
    messages: list[BaseMessage],
    stop: list[str] | None,
    overrides: dict[str, Any],
    include_usage: bool,
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        return _sse(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": service.model_name,
                "system_fingerprint": service.replica.replica_id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
        )

    usage = None
    finish = "stop"
    served_by = None
    role_sent = False
    agen = runnable.astream(messages, stop=stop, **overrides)
    try:
        async for piece in agen:
            if not isinstance(piece, AIMessageChunk):
                continue
            meta = piece.response_metadata or {}
            finish = meta.get("finish_reason") or finish
            served_by = meta.get("served_by") or served_by
            if piece.usage_metadata:
                usage = _usage(piece.usage_metadata)
            delta: dict[str, Any] = {}
            if not role_sent:
                delta["role"] = "assistant"
            if isinstance(piece.content, str) and piece.content:
                delta["content"] = piece.content
            if piece.tool_call_chunks:
                finish = "tool_calls"
                delta["tool_calls"] = [
                    {
                        "index": tc.get("index") or i,
                        "id": tc.get("id") or f"call_{uuid.uuid4().hex[:12]}",
                        "type": "function",
                        "function": {"name": tc.get("name"), "arguments": tc.get("args") or ""},
                    }
                    for i, tc in enumerate(piece.tool_call_chunks)
                ]
            if "content" in delta or "tool_calls" in delta:
                role_sent = True
                yield chunk(delta, None)
    finally:
        await agen.aclose()
    if not role_sent:
        yield chunk({"role": "assistant", "content": ""}, None)
    yield chunk({}, finish, setraf=service.meta(served_by))
    if include_usage:
        yield _sse(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": service.model_name,
                "system_fingerprint": service.replica.replica_id,
                "choices": [],
                "usage": usage,
                "setraf": service.meta(served_by),
            }
        )
    yield "data: [DONE]\n\n"


async def completions(service: ModelService, request: Request) -> Response:
    """``POST /v1/completions``."""
    rid = _request_id()
    deadline = service.deadline()
    try:
        body = await _admit(service, request, deadline)
        _check_fields(body, _COMMON | _COMPLETION_FIELDS | set(_SAMPLING))
        service.check_model(body.get("model"))
        stream, include_usage = _common(body)
        for name, allowed in _COMPLETION_NEUTRAL.items():
            if body.get(name) not in allowed:
                raise RequestError(f"{name}={body.get(name)!r} is not supported", param=name)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("prompt must be a string (or a list of one)", param="prompt")
        overrides = _overrides(body)
        stop = _stop(body)
        cid = f"cmpl-{uuid.uuid4().hex}"
        events = _completion_events(service, cid, prompt, stop, overrides, stream, include_usage)
        slot = service.begin()
        first = await _first_event(service, request, events, deadline, slot)
        if not stream:
            try:
                await events.aclose()  # type: ignore[attr-defined]
            finally:
                service.end(slot)
            assert first is not None
            return JSONResponse(json.loads(first), headers=_headers(service, rid))
    except Exception as exc:
        return error_response(exc, service, rid)
    return await _stream_response(service, events, first, deadline, rid, slot)


async def _completion_events(
    service: ModelService,
    cid: str,
    prompt: str,
    stop: list[str] | None,
    overrides: dict[str, Any],
    stream: bool,
    include_usage: bool,
) -> AsyncIterator[str]:
    """SSE events, or (``stream=False``) one JSON document."""
    created = int(time.time())
    base = {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": service.model_name,
        "system_fingerprint": service.replica.replica_id,
    }
    parts: list[str] = []
    info: dict[str, Any] = {}
    # the LLM's own chunk stream: its last chunk carries usage and finish reason
    agen = service.llm.astream_with_usage(prompt, stop, **overrides)
    try:
        async for piece in agen:
            if piece.generation_info:
                info.update(piece.generation_info)
            if piece.text:
                parts.append(piece.text)
                if stream:
                    choice = {"index": 0, "text": piece.text, "finish_reason": None}
                    yield _sse({**base, "choices": [choice], "logprobs": None})
    finally:
        await agen.aclose()
    p = int(info.get("prompt_tokens") or 0)
    c = int(info.get("completion_tokens") or 0)
    usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    finish = info.get("finish_reason") or "stop"
    meta = service.meta(info.get("served_by"))
    if not stream:
        choice = {"index": 0, "text": "".join(parts), "finish_reason": finish, "logprobs": None}
        yield json.dumps({**base, "choices": [choice], "usage": usage, "setraf": meta})
        return
    choice = {"index": 0, "text": "", "finish_reason": finish}
    yield _sse({**base, "choices": [choice], "setraf": meta})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": usage, "setraf": meta})
    yield "data: [DONE]\n\n"


async def models(service: ModelService, request: Request) -> Response:
    """``GET /v1/models``: the one model this deployment serves (its name, no path)."""
    rid = _request_id()
    try:
        service.policy.authorize(request)
    except RequestError as exc:
        return error_response(exc, service, rid)
    body = {
        "object": "list",
        "data": [
            {
                "id": service.model_name,
                "object": "model",
                "created": service.created,
                "owned_by": "setraf",
                "setraf": {**service.details, **service.meta()},
            }
        ],
    }
    return JSONResponse(body, headers=_headers(service, rid))


async def health(service: ModelService) -> Response:
    """``GET /health`` (no key needed): 200 once the replica holds its model, with the
    number of generations running (``inflight``); 503 while it is wedged (a generation
    that outlived its timeout)."""
    wedged = service.wedged()
    if wedged is not None:
        stuck = {"status": "wedged", "reason": wedged, "model": service.model_name}
        return JSONResponse(stuck, status_code=503, headers=service.headers())
    body = {
        "status": "ok",
        "model": service.model_name,
        "inflight": service.inflight,
        "setraf": service.meta(),
    }
    return JSONResponse(body, headers=service.headers())


async def tokenize(service: ModelService, request: Request) -> Response:
    """``POST /tokenize`` (llama.cpp's route): ``{"content", "add_special"}`` -> tokens."""
    rid = _request_id()
    try:
        body = await _admit(service, request, service.deadline())
        _check_fields(body, {"content", "add_special", "parse_special", "with_pieces"})
        content = body.get("content")
        if not isinstance(content, str):
            raise RequestError("content must be a string", param="content")
        if body.get("with_pieces") or body.get("parse_special") is False:
            raise RequestError("with_pieces / parse_special=false are not supported")
        if body.get("add_special"):
            tokens = service.chat.prompt_token_ids(content)
        else:
            tokens = service.llm.get_token_ids(content)
    except Exception as exc:
        return error_response(exc, service, rid)
    return JSONResponse({"tokens": [int(t) for t in tokens]}, headers=_headers(service, rid))


async def apply_template(service: ModelService, request: Request) -> Response:
    """``POST /apply-template`` (llama.cpp's route): messages -> the rendered prompt."""
    rid = _request_id()
    try:
        body = await _admit(service, request, service.deadline())
        _check_fields(body, {"messages"})
        messages = to_langchain_messages(body.get("messages"))
        fmt = getattr(service.llm, "format_chat", None)
        if fmt is None:
            raise RequestError(
                f"{type(service.llm).__name__} cannot render chat prompts", status=501
            )
        prompt = fmt(messages)
    except Exception as exc:
        return error_response(exc, service, rid)
    return JSONResponse({"prompt": prompt}, headers=_headers(service, rid))


def standalone_app(service: ModelService) -> FastAPI:
    """The same routes on a plain FastAPI app, without Ray (one process; for tests)."""
    app = FastAPI(title="langchain-setraf OpenAI-compatible server")

    @app.post("/v1/chat/completions")
    async def _chat(request: Request) -> Response:
        return await chat_completions(service, request)

    @app.post("/v1/completions")
    async def _completions(request: Request) -> Response:
        return await completions(service, request)

    @app.get("/v1/models")
    async def _models(request: Request) -> Response:
        return await models(service, request)

    @app.get("/health")
    async def _health() -> Response:
        return await health(service)

    @app.post("/tokenize")
    async def _tokenize(request: Request) -> Response:
        return await tokenize(service, request)

    @app.post("/apply-template")
    async def _apply_template(request: Request) -> Response:
        return await apply_template(service, request)

    return app
