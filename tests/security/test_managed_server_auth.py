"""Attacks on a running managed server by another local user and by a web page (issue 21:
#2, #8), against one real server (xllamacpp engine, SmolLM2) that ``setraf-alice`` starts
in her private runtime directory.

Asserted: ``setraf-mallory`` cannot list, read or rewrite alice's state (so he cannot
redirect her prompts), does not find her server's key on any command line or in any file
he can read, and gets 401 from every endpoint but ``/health`` without the key; a web
origin gets no CORS grant, with or without credentials; alice's own clients (a handle,
``setraf ps``) send the key and work; her last detach stops her server.
"""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.users import LocalUser, Namespace

pytestmark = pytest.mark.slow  # a real server started as another uid (seconds on 2 cores)

EVIL = "https://evil.example"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _snippet(model: Path, body: str) -> str:
    head = f"""
        import json, os, stat, sys
        from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
        from langchain_setraf.backends.llama_server import managed
        from langchain_setraf.backends.llama_server.managed import ManagedServer
        spec = LlamaServerBackend().spec_for({str(model)!r}, n_ctx=256, n_parallel=1)
        out = {{}}
    """
    return textwrap.dedent(head) + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"


@pytest.fixture(scope="module")
def alice_server(
    alice: LocalUser, mallory: LocalUser, smollm2_path: Path
) -> Iterator[tuple[Namespace, dict[str, Any]]]:
    """Alice's server, started by ``ensure()`` (no client attached: it stays up)."""
    ns = Namespace([alice, mallory])
    try:
        body = """
            server = ManagedServer.for_spec(spec)
            # the key file of a starter killed mid-start: removed by the next start
            (server.directory / f"{server.key}.crashed.key").write_text("old-key")
            info = server.ensure(start_timeout=180)
            state = json.loads(server.state_path.read_text())
            out = {"url": info.url, "port": info.port, "pid": info.pid,
                   "supervisor_pid": state["supervisor_pid"], "api_key": info.api_key,
                   "repr": repr(info), "dir": str(server.directory),
                   "state": str(server.state_path), "log": str(server.log_path),
                   "files": sorted(p.name for p in server.directory.iterdir())}
        """
        info = ns.python(alice, _snippet(smollm2_path, body), timeout=240)
        yield ns, info
    finally:
        ns.close()


def _request(
    url: str, *, method: str | None = None, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _granted(headers: dict[str, str], origin: str) -> bool:
    """Whether a browser at ``origin`` may read the response (CORS)."""
    allowed = {k.lower(): v for k, v in headers.items()}.get("access-control-allow-origin")
    return allowed in (origin, "*")


def test_mallory_cannot_list_read_or_rewrite_alices_state(
    alice_server: tuple[Namespace, dict[str, Any]], mallory: LocalUser
) -> None:
    ns, info = alice_server
    assert info["api_key"] and info["api_key"] not in info["repr"]
    # the key file is removed once the server has read it (and a stale one at the start)
    assert not [f for f in info["files"] if f.endswith(".key")], info["files"]
    code = f"""
import json, os
out = {{}}
for what, call in (
    ("list", lambda: os.listdir({info["dir"]!r})),
    ("read", lambda: open({info["state"]!r}).read()),
    ("write", lambda: open({info["state"]!r}, "w").write("{{}}")),
    ("create", lambda: open({info["dir"]!r} + "/planted.json", "w").write("{{}}")),
    ("log", lambda: open({info["log"]!r}).read()),
):
    try:
        call()
        out[what] = "allowed"
    except PermissionError:
        out[what] = "denied"
print(json.dumps(out))
"""
    assert ns.python(mallory, code) == dict.fromkeys(
        ("list", "read", "write", "create", "log"), "denied"
    )


def test_the_key_is_on_no_command_line_mallory_can_read(
    alice_server: tuple[Namespace, dict[str, Any]], mallory: LocalUser
) -> None:
    ns, info = alice_server
    code = f"""
import json
cmdlines = [open(f"/proc/{{pid}}/cmdline", "rb").read().decode()
            for pid in ({info["pid"]}, {info["supervisor_pid"]})]
print(json.dumps(cmdlines))
"""
    cmdlines = ns.python(mallory, code)
    assert len(cmdlines) == 2 and all("--api-key-file" in c for c in cmdlines)
    assert not any(info["api_key"] in c for c in cmdlines)


def test_mallory_gets_401_without_the_key(
    alice_server: tuple[Namespace, dict[str, Any]], mallory: LocalUser
) -> None:
    ns, info = alice_server
    code = f"""
import json, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
out = {{}}
for path, body, key in (
    ("/health", None, None),
    ("/props", None, None),
    ("/v1/models", None, None),
    ("/slots", None, None),
    ("/metrics", None, None),
    ("/v1/completions", {{"prompt": "secret", "max_tokens": 2}}, None),
    ("/v1/chat/completions", {{"messages": [{{"role": "user", "content": "x"}}]}}, "guess"),
):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request({info["url"]!r} + path, data=data)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with opener.open(req, timeout=60) as resp:
            out[path] = resp.status
    except urllib.error.HTTPError as exc:
        out[path] = exc.code
print(json.dumps(out))
"""
    codes = ns.python(mallory, code)
    assert codes.pop("/health") == 200  # liveness only: no model, prompt or answer
    assert codes == dict.fromkeys(codes, 401) and len(codes) == 6
    status, _, _ = _request(
        info["url"] + "/v1/completions",
        headers={"Authorization": f"Bearer {info['api_key']}"},
        body={"prompt": "The sky is", "max_tokens": 2},
    )
    assert status == 200  # the key opens it: the 401s are the key's doing


def test_a_web_origin_gets_no_cors_grant(alice_server: tuple[Namespace, dict[str, Any]]) -> None:
    _, info = alice_server
    url = info["url"]
    status, headers, _ = _request(
        url + "/v1/chat/completions",
        method="OPTIONS",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert not _granted(headers, EVIL)  # the preflight fails: no cross-origin request
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered.get("access-control-allow-credentials", "false") == "false"
    for path, body in (("/health", None), ("/v1/models", None), ("/props", None)):
        _, headers, _ = _request(url + path, headers={"Origin": EVIL}, body=body)
        assert not _granted(headers, EVIL), path
    # a "simple" cross-origin POST (no preflight) is refused before it reaches the model
    status, headers, _ = _request(
        url + "/v1/completions",
        headers={"Origin": EVIL, "Content-Type": "text/plain"},
        body={"prompt": "x", "max_tokens": 1},
    )
    assert status == 401 and not _granted(headers, EVIL)
    for origin in ("null", "http://localhost:8501", "http://127.0.0.1:8501"):
        _, headers, _ = _request(url + "/v1/models", headers={"Origin": origin})
        assert not _granted(headers, origin), origin


def test_alice_clients_send_the_key_then_her_last_detach_stops_it(
    alice_server: tuple[Namespace, dict[str, Any]], alice: LocalUser, smollm2_path: Path
) -> None:
    """Runs last in this module: it stops the server."""
    ns, info = alice_server
    body = """
        import subprocess
        from langchain_setraf.backends.base import GenerationRequest, GenerationStats
        cli = subprocess.run([sys.executable, "-m", "langchain_setraf.cli", "ps", "--json"],
                             capture_output=True, text=True, timeout=60)
        handle = LlamaServerBackend().load(spec)
        request = GenerationRequest(params={"max_tokens": 4, "temperature": 0.0})
        out["text"] = "".join(handle.generate("The sky is", request, GenerationStats()))
        out["pid"] = handle.info.pid
        handle.close()
        out["running_after_close"] = ManagedServer.for_spec(spec).is_running()
        out["cli"] = json.loads(cli.stdout)
    """
    result = ns.python(alice, _snippet(smollm2_path, body), timeout=180)
    assert result["pid"] == info["pid"] and result["text"]
    [listed] = result["cli"]
    assert listed["healthy"] and listed["sleeping"] is False  # /props answered: key sent
    assert listed["pid"] == info["pid"] and listed["busy"] is None
    assert result["running_after_close"] is False
