"""The managed llama.cpp server: one per host per model and options, shared by processes.

Real servers (the xllamacpp wheel hosted in a child process) on 127.0.0.1, real client
processes, real files. Every test runs in its own runtime directory (``tmp_path``) and
kills whatever server it started, even on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from helpers.managed_servers import gone as _gone
from helpers.managed_servers import kill_servers as _kill_servers
from langchain_setraf.backends.base import GenerationRequest, GenerationStats, LoadSpec
from langchain_setraf.backends.gguf.file import GGUFFormatError
from langchain_setraf.backends.llama_server import managed
from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
from langchain_setraf.backends.llama_server.engine import (
    ENGINE_ENV,
    Engine,
    EngineNotFoundError,
    ServerArgs,
    resolve_engine,
    server_argv,
)
from langchain_setraf.backends.llama_server.managed import (
    ManagedServer,
    ServerStartError,
    running_servers,
)
from langchain_setraf.backends.server_errors import ServerDiedError

HELPERS = Path(__file__).parent / "helpers"
N_CTX = 256
GREEDY = GenerationRequest(params={"max_tokens": 6, "temperature": 0.0})


@pytest.fixture()
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private runtime directory; afterwards every server recorded there is killed."""
    directory = tmp_path / "run"
    directory.mkdir()
    monkeypatch.setenv("SETRAF_RUNTIME_DIR", str(directory))
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    monkeypatch.setenv("SETRAF_SERVER_START_TIMEOUT", "120")
    try:
        yield directory
    finally:
        _kill_servers(directory)


def _spec(model: Path, **options: Any) -> LoadSpec:
    options.setdefault("n_ctx", N_CTX)
    options.setdefault("n_parallel", 2)
    return LlamaServerBackend().spec_for(model, **options)


def _text(handle: Any, prompt: str = "The capital of France is") -> str:
    return "".join(handle.generate(prompt, GREEDY, GenerationStats()))


# -- engine -----------------------------------------------------------------------------------


def test_engine_from_env_must_be_an_executable_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-llama-server"
    with pytest.raises(EngineNotFoundError, match="no such file") as info:
        resolve_engine({ENGINE_ENV: str(missing)})
    assert str(missing) in str(info.value)
    plain = tmp_path / "llama-server"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(EngineNotFoundError, match="not executable"):
        resolve_engine({ENGINE_ENV: str(plain)})
    plain.chmod(plain.stat().st_mode | stat.S_IXUSR)
    assert resolve_engine({ENGINE_ENV: str(plain)}) == Engine("llama-server", (str(plain),))


def test_default_engine_is_the_xllamacpp_host() -> None:
    engine = resolve_engine({"PATH": ""})
    assert engine.name == "xllamacpp"
    assert engine.command[-1] == "langchain_setraf.backends.llama_server.xllamacpp_host"


def test_server_argv_maps_options_to_llama_server_flags() -> None:
    engine = Engine("llama-server", ("/bin/llama-server",))
    args = ServerArgs(
        model_path="/m.gguf",
        port=9000,
        n_ctx=512,
        n_parallel=3,
        n_threads=2,
        use_mmap=False,
        repack=False,
        sleep_idle_seconds=5,
        alias="m",
    )
    argv = server_argv(engine, args)
    pairs = dict(zip(argv[1::1], argv[2::1], strict=False))
    assert argv[0] == "/bin/llama-server"
    assert pairs["-c"] == "1536"  # n_ctx per slot x slots
    assert pairs["--parallel"] == "3"
    assert pairs["--host"] == "127.0.0.1"
    assert pairs["--sleep-idle-seconds"] == "5"
    assert pairs["-ngl"] == "0"
    assert pairs["--load-mode"] == "none" and "--no-repack" in argv
    mlocked = server_argv(engine, ServerArgs("/m.gguf", 9000, 512, 1, 2, use_mlock=True))
    assert mlocked[mlocked.index("--load-mode") + 1] == "mmap+mlock"
    assert "--load-mode" not in server_argv(engine, ServerArgs("/m.gguf", 9000, 512, 1, 2))


def test_xllamacpp_host_refuses_unknown_flags(smollm2_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "langchain_setraf.backends.llama_server.xllamacpp_host",
            "-m",
            str(smollm2_path),
            "--flash-attn",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--flash-attn" in proc.stderr


# -- one process ------------------------------------------------------------------------------


@pytest.mark.slow  # over 20 s on 2 busy cores: generation and chat on two handles
def test_generate_chat_tokens_and_sharing(runtime: Path, smollm2_path: Path) -> None:
    backend = LlamaServerBackend()
    spec = _spec(smollm2_path)
    assert backend.estimate_bytes(spec) > 0
    first = backend.load(spec)
    second = backend.load(_spec(smollm2_path, request_timeout=30.0))  # same server
    try:
        assert second.info.pid == first.info.pid
        assert backend.estimate_bytes(spec) == 0  # its memory is already in use
        stats = GenerationStats()
        text = "".join(first.generate("The capital of France is", GREEDY, stats))
        assert text and stats.completion_tokens == 6 and stats.finish_reason == "length"
        assert stats.served_by == first.info.url + "/v1"
        messages = [{"role": "user", "content": "Say hello."}]
        assert "".join(second.chat(messages, GREEDY, GenerationStats()))
        assert first.count_tokens("hello world") == len(backend.tokenize(spec, "hello world"))
        status = ManagedServer.for_spec(spec).status()
        assert status.running and status.healthy and status.clients == [os.getpid()]
        assert status.rss > 0
    finally:
        first.close()
    assert ManagedServer.for_spec(spec).is_current(second.info)  # the second handle holds it
    assert _text(second)
    second.close()  # the process's last handle: detached, and the server stopped
    assert _gone(first.info.pid)
    assert not ManagedServer.for_spec(spec).is_running()


def test_release_keeps_a_server_another_process_uses(runtime: Path, smollm2_path: Path) -> None:
    server = ManagedServer.for_spec(_spec(smollm2_path))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        info = server.attach()
        server.attach(other.pid)
        assert server.detach() is False  # the other process is still attached
        assert server.is_current(info)
        assert server.status().clients == [other.pid]
        other.kill()
        other.wait(timeout=10)
        assert server.detach() is True  # no live client left: stopped
        assert _gone(info.pid)
    finally:
        other.kill()
        other.wait(timeout=10)


def test_never_stops_a_process_it_did_not_start(runtime: Path, smollm2_path: Path) -> None:
    spec = _spec(smollm2_path)
    server = ManagedServer.for_spec(spec)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        start = managed.process_start(bystander.pid)
        server.state_path.write_text(
            json.dumps(
                {
                    "version": 1,
                    "key": server.key,
                    "model_path": spec.path,
                    "port": 9,
                    "launch_id": "x",
                    "server_pid": bystander.pid,
                    "server_start": start,
                    "supervisor_pid": bystander.pid,
                    "supervisor_start": start,
                    "started_by_package": True,
                    "n_parallel": 2,
                    "argv": [],
                    "clients": [],
                }
            )
        )
        with pytest.warns(RuntimeWarning, match="not signalled"):
            assert server.stop() is False  # it cannot be signalled: says so...
        time.sleep(0.5)
        assert bystander.poll() is None  # its command line is not ours: left alone
        assert json.loads(server.state_path.read_text())["server_pid"] == bystander.pid
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.slow  # over 20 s on 2 busy cores: a long stream, then a restart
def test_killed_mid_stream_names_the_server_then_restarts(
    runtime: Path, smollm2_path: Path
) -> None:
    handle = LlamaServerBackend().load(_spec(smollm2_path))
    try:
        old = handle.info
        long = GenerationRequest(params={"max_tokens": 2000, "temperature": 0.0})
        stream = handle.generate("Once upon a time", long, GenerationStats())
        assert next(stream)
        os.kill(old.pid, signal.SIGKILL)
        with pytest.raises(ServerDiedError) as info:
            for _ in stream:
                pass
        message = str(info.value)
        assert f"pid {old.pid}" in message and f"127.0.0.1:{old.port}" in message
        assert "killed by SIGKILL" in message and smollm2_path.name in message
        assert info.value.exit_status == -signal.SIGKILL
        assert _text(handle)  # the next call starts a new server
        assert handle.info.pid != old.pid
    finally:
        handle.close()
    assert _gone(handle.info.pid)  # still one attachment: the close stopped the new server


def test_four_processes_start_exactly_one_server(runtime: Path, smollm2_path: Path) -> None:
    argv = [sys.executable, str(HELPERS / "server_client.py"), str(smollm2_path), str(N_CTX), "2"]
    clients = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        reports = []
        for proc in clients:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # each prints once it has generated
            reports.append(json.loads(line or '{"error": "no output"}'))
        assert all("error" not in r for r in reports), reports
        assert len({r["server_pid"] for r in reports}) == 1
        supervisors = [  # the server's command line names the runtime dir too (its key file)
            p
            for p in psutil.process_iter(["cmdline"])
            if "langchain_setraf.backends.llama_server.supervisor" in (p.info.get("cmdline") or [])
            and any(str(runtime) in part for part in (p.info.get("cmdline") or []))
        ]
        assert len(supervisors) == 1
        server_pid = reports[0]["server_pid"]
        spec = _spec(smollm2_path)
        assert sorted(ManagedServer.for_spec(spec).status().clients) == sorted(
            r["pid"] for r in reports
        )
        for proc in clients[:3]:  # three detach: the server stays for the fourth
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.wait(timeout=60) == 0
        assert managed.process_start(server_pid) is not None
        assert clients[3].stdin is not None
        clients[3].stdin.write("\n")
        clients[3].stdin.flush()
        assert clients[3].wait(timeout=60) == 0
        assert _gone(server_pid)  # the last one out stopped it
    finally:
        for proc in clients:
            proc.kill()
            proc.wait(timeout=10)


def test_stale_state_dead_or_reused_pid(runtime: Path, smollm2_path: Path) -> None:
    spec = _spec(smollm2_path)
    server = ManagedServer.for_spec(spec)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    me = managed.process_start(os.getpid())
    assert me is not None
    for pid, start in ((dead.pid, 1.0), (os.getpid(), me - 1000.0)):  # dead; reused pid
        server.state_path.write_text(
            json.dumps(
                {
                    "version": 1,
                    "key": server.key,
                    "model_path": spec.path,
                    "port": 9,
                    "launch_id": "stale",
                    "server_pid": pid,
                    "server_start": start,
                    "supervisor_pid": pid,
                    "supervisor_start": start,
                    "started_by_package": True,
                    "n_parallel": 2,
                    "argv": [],
                    "clients": [],
                }
            )
        )
        info = server.ensure()
        assert info.pid not in (pid, os.getpid()) and info.port != 9
        assert server.stop()
        assert _gone(info.pid)


def test_port_answered_by_another_server_is_recovered(runtime: Path, smollm2_path: Path) -> None:
    class Foreign(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # /health and /props of some other service
            body = json.dumps({"status": "ok", "model_path": "/other.gguf"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    foreign = ThreadingHTTPServer(("127.0.0.1", 0), Foreign)
    thread = threading.Thread(target=foreign.serve_forever, daemon=True)
    thread.start()
    server = ManagedServer.for_spec(_spec(smollm2_path))
    try:
        first = server.ensure()
        state = json.loads(server.state_path.read_text())
        state["port"] = foreign.server_address[1]  # our process lives; its port is not ours
        server.state_path.write_text(json.dumps(state))
        with pytest.warns(RuntimeWarning, match="does not answer as expected"):
            second = server.ensure()
        assert second.pid != first.pid and second.port != foreign.server_address[1]
        assert _gone(first.pid)
    finally:
        foreign.shutdown()
        foreign.server_close()
        server.stop()


def test_port_taken_at_start_is_retried(
    runtime: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real_free_port = managed.free_port
    monkeypatch.setattr(managed, "free_port", lambda: next(ports, None) or real_free_port())
    server = ManagedServer.for_spec(_spec(smollm2_path))
    try:
        info = server.ensure()
        assert info.port != taken.getsockname()[1]
    finally:
        taken.close()
        server.stop()


def test_corrupt_state_file_is_replaced_with_a_warning(runtime: Path, smollm2_path: Path) -> None:
    server = ManagedServer.for_spec(_spec(smollm2_path))
    server.state_path.write_text('{"version": 1, "port": ')
    try:
        with pytest.warns(RuntimeWarning, match="corrupt server state file"):
            info = server.ensure()
        assert server.is_current(info)
    finally:
        server.stop()


def test_hostile_gguf_is_refused_before_launch(runtime: Path, tmp_path: Path) -> None:
    from helpers.malformed_gguf import write_gguf

    bad = tmp_path / "hostile.gguf"
    bad.write_bytes(write_gguf(n_kv=1 << 40))
    with pytest.raises(GGUFFormatError, match=r"hostile\.gguf"):
        LlamaServerBackend().load(_spec(bad))
    assert not list(runtime.glob("*.log"))  # no server was started


def test_a_file_the_server_cannot_load_is_named(runtime: Path, tmp_path: Path) -> None:
    from helpers.malformed_gguf import write_gguf

    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(write_gguf())  # a valid header, but no model llama.cpp can build
    with pytest.raises(ServerStartError, match="exited before it was ready") as info:
        LlamaServerBackend().load(_spec(bad))
    assert "not-a-model.gguf" in str(info.value)
    assert "last lines of" in str(info.value)


def test_llama_server_bin_missing_is_a_clear_error(
    runtime: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENGINE_ENV, str(tmp_path / "nowhere" / "llama-server"))
    with pytest.raises(EngineNotFoundError, match="nowhere/llama-server: no such file"):
        LlamaServerBackend().load(_spec(smollm2_path))


@pytest.mark.slow  # over 20 s on 2 busy cores: a start through a shell wrapper
def test_llama_server_bin_wrapper_script(
    runtime: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrapper = tmp_path / "llama-server"
    wrapper.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m langchain_setraf.backends.llama_server.xllamacpp_host "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv(ENGINE_ENV, str(wrapper))
    handle = LlamaServerBackend().load(_spec(smollm2_path))
    try:
        assert handle.info.engine == "llama-server"
        assert _text(handle)
    finally:
        handle.close()
    assert _gone(handle.info.pid)


@pytest.mark.slow  # an idle period, then a reload of the weights
def test_keep_alive_sleeps_and_wakes(runtime: Path, smollm2_path: Path) -> None:
    spec = _spec(smollm2_path, sleep_idle_seconds=1)
    handle = LlamaServerBackend().load(spec)
    server = ManagedServer.for_spec(spec)
    try:
        assert _text(handle)
        deadline = time.monotonic() + 60
        while not server.status().sleeping and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.status().sleeping
        assert server.sleep() == "sleeping"
        assert _text(handle)  # a request reloads the weights
    finally:
        handle.close()


def test_cli_ps_and_stop(
    runtime: Path, smollm2_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``setraf ps`` lists a real server (model, pid, port, memory, why up) and its memory
    split (weights / KV cache / prompt cache / other: the estimate, the prompt cache at its
    cap, and the buffers llama.cpp reported); ``setraf stop MODEL`` stops it by its model's
    file name; ``server status`` still answers, with a deprecation note naming ``ps``."""
    from langchain_setraf.cli import main
    from langchain_setraf.memory import format_bytes

    spec = _spec(smollm2_path)
    server = ManagedServer.for_spec(spec)
    info = server.ensure()
    assert main(["ps", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["pid"] == info.pid and listed["port"] == info.port and listed["healthy"]
    assert listed["model"] == str(smollm2_path.resolve()) and listed["rss"] > 0
    assert listed["why_up"]
    estimate = LlamaServerBackend().server_split(spec)
    assert listed["memory"] == estimate.as_dict()
    assert estimate.total == LlamaServerBackend().server_bytes(spec)
    assert estimate.prompt_cache == server.server_args(0).cache_ram_mib * 1024 * 1024
    # the xllamacpp host logs llama.cpp's buffer sizes (LOG_VERBOSITY), as llama-server does
    allocated = listed["allocated"]
    assert allocated is not None, server.log_path.read_text()[-2000:]
    assert allocated["source"] == "llama.cpp" and allocated["prompt_cache"] == 0
    # SmolLM2 attends to every token: llama.cpp's KV buffer is the formula's
    assert abs(allocated["kv_cache"] - estimate.kv_cache) < 1024 * 1024
    assert abs(allocated["weights"] - estimate.weights) < 1024 * 1024
    assert main(["ps"]) == 0
    line = capsys.readouterr().out
    assert f"pid {info.pid}" in line and f"port {info.port}" in line
    assert smollm2_path.name in line and "RSS" in line
    expected = f"prompt cache {format_bytes(estimate.prompt_cache)} (cap)"
    assert "estimate" in line and expected in line
    assert f"KV cache {format_bytes(estimate.kv_cache)}" in line
    assert "allocated" in line
    assert main(["server", "status"]) == 0
    old = capsys.readouterr()
    assert old.out.split("RSS")[0] == line.split("RSS")[0]  # the same listing (memory moves)
    assert old.err.strip() == (
        "setraf: 'setraf server status' is deprecated and removed in 0.5.0; use 'setraf ps'"
    )
    assert [s.key for s in running_servers()] == [server.key]
    assert main(["stop", "no-such-model.gguf"]) == 2
    assert "no managed server matches 'no-such-model.gguf'" in capsys.readouterr().err
    assert server.is_running()
    assert main(["stop", smollm2_path.name]) == 0
    assert capsys.readouterr().out.strip() == f"{server.key}: stopped"
    assert _gone(info.pid)
    assert main(["stop", "--all"]) == 0  # nothing left running: nothing to do


def test_cli_sleep_and_the_deprecated_server_verbs(
    runtime: Path, smollm2_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_setraf.cli import main

    server = ManagedServer.for_spec(_spec(smollm2_path))
    info = server.ensure()
    assert main(["sleep", server.key[:6]]) == 0  # every server has an idle timer
    assert capsys.readouterr().out.strip() == f"{server.key}: idle-timer"
    assert main(["server", "sleep", "--all"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"{server.key}: idle-timer" and "use 'setraf sleep'" in out.err
    assert main(["server", "stop", server.key[:6]]) == 0
    out = capsys.readouterr()
    assert f"{server.key}: stopped" in out.out
    assert "'setraf server stop' is deprecated" in out.err and "use 'setraf stop'" in out.err
    assert _gone(info.pid)


# -- through the LangChain classes ------------------------------------------------------------


@pytest.mark.slow  # over 20 s on 2 busy cores: four generations through the classes
def test_gguf_classes_with_server_true_share_one_server(
    runtime: Path, smollm2_path: Path, cache: Any
) -> None:
    import asyncio

    from langchain_setraf import GGUFLLM, ChatGGUF

    options: dict[str, Any] = {"n_ctx": N_CTX, "n_parallel": 2, "temperature": 0.0}
    llm = GGUFLLM(model_path=str(smollm2_path), server=True, max_tokens=6, **options)
    chat = ChatGGUF(model_path=str(smollm2_path), server=True, max_tokens=6, **options)
    try:
        assert llm.invoke("The capital of France is")
        assert "".join(llm.stream("Hello")) != ""
        assert asyncio.run(llm.ainvoke("Hello"))
        message = chat.invoke("Say hello.")
        assert message.content and message.usage_metadata is not None
        assert message.usage_metadata["output_tokens"] == 6
        # the same prompt again: the slot's KV state serves all of it but the last token,
        # and the server says so (LangChain's cache_read)
        again = chat.invoke("Say hello.").usage_metadata
        assert again is not None and again["input_tokens"] == message.usage_metadata["input_tokens"]
        cached = again.get("input_token_details", {}).get("cache_read")
        assert cached is not None and again["input_tokens"] - 1 <= cached <= again["input_tokens"]
        [server] = running_servers()  # one server for both objects (same file and options)
        assert server.running and server.clients == [os.getpid()]
        assert server.info is not None
        assert message.response_metadata["served_by"] == server.info.url + "/v1"
        pid = server.info.pid
    finally:
        llm.release()
        chat.release()
    assert _gone(pid)  # this process started it and was its only client


def test_a_server_whose_starter_died_is_adopted(runtime: Path, smollm2_path: Path) -> None:
    argv = [sys.executable, str(HELPERS / "server_client.py"), str(smollm2_path), str(N_CTX), "2"]
    starter = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    server = ManagedServer.for_spec(_spec(smollm2_path))
    try:
        deadline = time.monotonic() + 120
        state: dict[str, Any] = {}
        while time.monotonic() < deadline and "server_pid" not in state:
            try:
                state = json.loads(server.state_path.read_text() or "{}")
            except (OSError, ValueError):
                state = {}
            time.sleep(0.02)
        starter.kill()  # dies holding the lock, the server possibly still loading
        starter.wait(timeout=10)
        info = server.ensure()
        assert info.pid == state["server_pid"]  # attached, not restarted
        assert server.status().clients == []  # the dead starter is not a client
    finally:
        starter.kill()
        starter.wait(timeout=10)
        server.stop()


@pytest.mark.slow  # a start of llama.cpp's own binary
def test_a_real_llama_server_binary(
    runtime: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same flags drive a ``llama-server`` built from llama.cpp's sources (set
    ``SETRAF_TEST_LLAMA_SERVER_BIN`` to one, e.g. built from the llama-cpp-python sdist)."""
    binary = os.environ.get("SETRAF_TEST_LLAMA_SERVER_BIN")
    if not binary:
        pytest.skip("SETRAF_TEST_LLAMA_SERVER_BIN is not set (no llama-server binary to test)")
    monkeypatch.setenv(ENGINE_ENV, binary)
    spec = _spec(smollm2_path, sleep_idle_seconds=30, repack=False, use_mmap=True)
    handle = LlamaServerBackend().load(spec)
    try:
        assert handle.info.engine == "llama-server"
        assert _text(handle)
        assert "".join(handle.chat([{"role": "user", "content": "Hi"}], GREEDY, GenerationStats()))
    finally:
        handle.close()
    assert _gone(handle.info.pid)


@pytest.mark.slow
def test_the_ert_interpretation_runs_unchanged_on_the_shared_server(
    runtime: Path, smollm2_path: Path, cache: Any
) -> None:
    """The interpretation chain over ``GGUFLLM(server=True)``: the form is decoded under its
    JSON schema by the server (``json_schema`` on /v1/completions), so every unit gets a
    material from its own candidates, as in-process."""
    from langchain_setraf import GGUFLLM
    from langchain_setraf.ert import interpretation_chain, load_survey, summarize
    from langchain_setraf.ert.interpretation import spec_of

    example = Path(__file__).resolve().parents[1] / "examples" / "two_layer_wenner.dat"
    summary = summarize(load_survey(example), language="en")
    llm = GGUFLLM(model_path=str(smollm2_path), server=True, temperature=0, n_parallel=1)
    try:
        result = interpretation_chain(llm, language="en").invoke({"survey": summary})
        spec = spec_of(summary)
        assert result.choices is not None and result.choices.source == "constrained"
        for unit, unit_spec in zip(result.choices.units, spec.units, strict=True):
            assert unit.material in unit_spec.candidates, (unit, unit_spec.candidates)
        assert not any("did not parse" in w for w in result.warnings), result.warnings
        [server] = running_servers()
        assert server.running, "the chain did not use the shared server"
    finally:
        llm.release()
