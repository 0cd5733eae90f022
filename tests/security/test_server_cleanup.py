"""Managed servers clean up after themselves and keep their memory and logs bounded
(issue 21, attacks 9 and 10).

Real servers (the xllamacpp wheel hosted in a child process) on 127.0.0.1, real client
processes that are SIGKILLed or exit without releasing, real files. Timings are short
(``keep_alive`` of 1-2 s, ``$SETRAF_SERVER_EXIT_GRACE`` of 2 s) and every wait is bounded;
nothing asserts a speed. Every test runs in its own runtime directory and kills whatever
it started, even on failure.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from langchain_setraf.backends.base import GenerationRequest, GenerationStats
from langchain_setraf.backends.gguf.file import read_gguf_header
from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
from langchain_setraf.backends.llama_server.engine import ENGINE_ENV, resolve_engine, server_argv
from langchain_setraf.backends.llama_server.managed import (
    EXIT_GRACE_ENV,
    LOG_MAX_BYTES_ENV,
    ManagedServer,
    ServerStatus,
    running_servers,
)
from langchain_setraf.backends.llama_server.private_files import InsecureRuntimeDirError
from langchain_setraf.backends.llama_server.rotating_log import RotatingLog
from langchain_setraf.backends.llama_server.server_memory import MIB, default_cache_ram_mib
from langchain_setraf.backends.llama_server.supervisor import STOP_GRACE_SECONDS, WATCH_INTERVAL

KEEP_ALIVE = 2
GRACE = 2
#: The most a server with no client may outlive it: keep_alive + grace + two looks of its
#: supervisor + its stop, and a generous margin for a loaded 2-core machine.
GONE_WITHIN = KEEP_ALIVE + GRACE + 2 * WATCH_INTERVAL + STOP_GRACE_SECONDS + 60.0
N_CTX = 256

#: A client process: loads the model in the shared server through GGUFLLM, generates,
#: prints its pid and the server's, then waits (to be killed) or returns without
#: releasing anything.
CLIENT = textwrap.dedent(
    """
    import json, os, sys, time
    from langchain_setraf import GGUFLLM
    from langchain_setraf.backends.llama_server.managed import running_servers
    model, keep, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    llm = GGUFLLM(model_path=model, server=True, n_ctx=256, n_parallel=1,
                  keep_alive=keep, max_tokens=2, temperature=0.0)
    text = llm.invoke("The sky is")
    [server] = running_servers()
    print(json.dumps({"pid": os.getpid(), "server_pid": server.info.pid,
                      "key": server.key, "text": text}), flush=True)
    if mode == "wait":
        time.sleep(600)
    """
)


@pytest.fixture()
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private runtime directory with short idle timings; afterwards every process
    started there is killed."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("SETRAF_RUNTIME_DIR", str(directory))
    monkeypatch.setenv(EXIT_GRACE_ENV, str(GRACE))
    monkeypatch.setenv("SETRAF_SERVER_START_TIMEOUT", "120")
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    try:
        yield directory
    finally:
        _kill_everything_in(directory)


def _ours(directory: Path) -> list[psutil.Process]:
    """Supervisors and servers started for ``directory`` (their argv names it), and their
    children."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if any(str(directory) in part for part in cmd):
            found.append(proc)
            try:
                found.extend(proc.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return found


def _kill_everything_in(directory: Path) -> None:
    victims = _ours(directory)
    for status in running_servers(directory):
        if status.running and status.info is not None:
            try:
                victims.append(psutil.Process(status.info.pid))
            except psutil.NoSuchProcess:
                pass
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)


def _start_client(model: Path, keep_alive: float, mode: str) -> tuple[subprocess.Popen[str], Any]:
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(model), str(keep_alive), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    line = client.stdout.readline()  # bounded: the client's server start has a deadline
    if not line:
        client.kill()
        _, err = client.communicate(timeout=30)
        pytest.fail(f"the client printed nothing: {err[-2000:]}")
    return client, json.loads(line)


def _wait_gone(pid: int, timeout: float) -> bool:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def _none_left(directory: Path, timeout: float = 30.0) -> bool:
    """Whether every process started for ``directory`` has exited (a supervisor writes its
    exit record once its server is gone)."""
    deadline = time.monotonic() + timeout
    while _ours(directory):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _status(key: str) -> ServerStatus:
    [status] = [s for s in running_servers() if s.key == key]
    return status


@pytest.mark.slow  # a real server on 2 busy cores
def test_a_sigkilled_client_leaves_no_server_behind(runtime: Path, smollm2_path: Path) -> None:
    client, seen = _start_client(smollm2_path, KEEP_ALIVE, "wait")
    assert seen["text"]
    client.send_signal(signal.SIGKILL)  # no detach, no atexit: the state still names it
    client.wait(timeout=30)
    assert _wait_gone(seen["server_pid"], GONE_WITHIN), "the abandoned server is still up"
    assert _none_left(runtime), "its supervisor is still running"
    status = _status(seen["key"])
    assert not status.running and status.why_up() == ""
    assert status.last_exit is not None and "no live client" in status.last_exit
    assert not ManagedServer.for_key(seen["key"]).is_running()


@pytest.mark.slow  # a real server on 2 busy cores
def test_a_client_that_exits_without_releasing_leaves_no_server_behind(
    runtime: Path, smollm2_path: Path
) -> None:
    client, seen = _start_client(smollm2_path, KEEP_ALIVE, "return")
    assert client.wait(timeout=60) == 0
    assert _wait_gone(seen["server_pid"], GONE_WITHIN), "the abandoned server is still up"
    assert _none_left(runtime), "its supervisor is still running"
    assert not _status(seen["key"]).running


@pytest.mark.slow  # a real server on 2 busy cores
def test_a_live_client_keeps_its_server_and_status_says_why(
    runtime: Path, smollm2_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_setraf.cli import main

    backend = LlamaServerBackend()
    spec = backend.spec_for(smollm2_path, n_ctx=N_CTX, n_parallel=1, sleep_idle_seconds=1)
    server = ManagedServer.for_spec(spec)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        info = server.attach(holder.pid)  # a live client process that never calls
        time.sleep(1 + GRACE + 3 * WATCH_INTERVAL)  # past keep_alive + grace: still up
        status = server.status()
        assert status.running and status.clients == [holder.pid]
        assert status.why_up().endswith("1 live client")
        assert main(["ps"]) == 0
        assert "1 live client" in capsys.readouterr().out
        holder.kill()
        holder.wait(timeout=30)
        assert _wait_gone(info.pid, GONE_WITHIN)
        assert "no live client" in str(server.status().last_exit)
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.slow  # a real server on 2 busy cores
def test_status_shows_when_an_abandoned_server_sleeps_and_exits(
    runtime: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(EXIT_GRACE_ENV, "600")  # long enough to watch it wait
    client, seen = _start_client(smollm2_path, 1, "wait")
    client.kill()
    client.wait(timeout=30)
    deadline = time.monotonic() + 60
    status = _status(seen["key"])
    while not (status.sleeping and status.idle_since) and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _status(seen["key"])
    assert status.running and status.sleeping, "the abandoned server did not unload"
    assert status.clients == [] and status.idle_since is not None
    assert status.exits_at == pytest.approx(status.idle_since + 1 + 600)
    why = status.why_up()
    assert why.startswith("no client since") and "exits at" in why
    assert "sleeps by" not in why  # it already sleeps
    assert ManagedServer.for_key(seen["key"]).stop()


@pytest.mark.slow  # a real server on 2 busy cores
def test_the_server_log_never_exceeds_its_bound(
    runtime: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = 4096
    monkeypatch.setenv(LOG_MAX_BYTES_ENV, str(bound))
    backend = LlamaServerBackend()
    spec = backend.spec_for(smollm2_path, n_ctx=N_CTX, n_parallel=1)
    handle = backend.load(spec)
    log = handle.server.log_path
    old = log.with_name(log.name + ".1")
    request = GenerationRequest(params={"max_tokens": 2, "temperature": 0.0})
    try:
        for i in range(80):  # each request logs a few hundred bytes
            "".join(handle.generate(f"Request {i}: the sky is", request, GenerationStats()))
            assert log.stat().st_size <= bound
            if old.exists() and i >= 20:
                break
        assert old.exists(), "more than the bound was logged, yet the log never rotated"
        for path in (log, old):
            st = path.lstat()
            assert stat.S_ISREG(st.st_mode) and st.st_size <= bound
            assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert not log.with_name(log.name + ".2").exists()  # one old file is kept
    finally:
        handle.close()


def test_a_log_path_planted_as_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    link = tmp_path / "server.log"
    link.symlink_to(victim)
    with pytest.raises(InsecureRuntimeDirError, match="symbolic link"):
        RotatingLog(link, 4096)
    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_rotation_keeps_each_file_within_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    log = RotatingLog(path, 1000, backups=1)
    try:
        for i in range(50):
            log.write(f"line {i:03d} ".encode() * 10)  # 90 bytes each, 4,500 in all
            assert path.stat().st_size <= 1000
        log.write(b"x" * 5000)  # one write past the bound keeps its end only
    finally:
        log.close()
    assert path.read_bytes() == b"x" * 1000
    assert (tmp_path / "server.log.1").stat().st_size <= 1000
    assert not (tmp_path / "server.log.2").exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    single = RotatingLog(tmp_path / "single.log", 1000, backups=0)
    try:
        for i in range(50):
            single.write(f"line {i:03d} ".encode() * 10)
            assert (tmp_path / "single.log").stat().st_size <= 1000
    finally:
        single.close()
    assert not (tmp_path / "single.log.1").exists()


@pytest.mark.slow  # a real server on 2 busy cores
def test_the_prompt_cache_is_capped_and_counted(runtime: Path, smollm2_path: Path) -> None:
    import xllamacpp

    from langchain_setraf.backends.llama_server.xllamacpp_host import build_params, parse_args

    backend = LlamaServerBackend()
    default = backend.spec_for(smollm2_path, n_ctx=4096, n_parallel=4)
    capped = backend.spec_for(smollm2_path, n_ctx=4096, n_parallel=4, cache_ram_mib=64)
    none = backend.spec_for(smollm2_path, n_ctx=4096, n_parallel=4, cache_ram_mib=0)
    engine = resolve_engine()

    def flag(spec: Any) -> str:
        argv = server_argv(engine, ManagedServer.for_spec(spec).server_args(8080))
        return argv[argv.index("--cache-ram") + 1]

    cap = default_cache_ram_mib(read_gguf_header(smollm2_path), 4096)
    assert 1 < cap < 8192  # llama.cpp's own default would be 8 GiB
    assert flag(default) == str(cap) and flag(capped) == "64" and flag(none) == "0"
    # the budget counts the cache at its cap
    assert backend.server_bytes(capped) - backend.server_bytes(none) == 64 * MIB
    assert backend.server_bytes(default) - backend.server_bytes(none) == cap * MIB
    assert backend.estimate_bytes(capped) == backend.server_bytes(capped)  # not running
    # the xllamacpp host hands both caps to llama.cpp
    ns = parse_args(["-m", str(smollm2_path), "--cache-ram", "64", "--ctx-checkpoints", "4"])
    params = build_params(xllamacpp, ns)
    assert params.cache_ram_mib == 64 and params.n_ctx_checkpoints == 4
    # and a real server is started with them
    small = backend.spec_for(smollm2_path, n_ctx=N_CTX, n_parallel=1, cache_ram_mib=8)
    handle = backend.load(small)
    try:
        cmdline = psutil.Process(handle.info.pid).cmdline()
        assert cmdline[cmdline.index("--cache-ram") + 1] == "8"
        assert "--ctx-checkpoints" in cmdline
        assert backend.estimate_bytes(small) == 0  # running: already in use
    finally:
        handle.close()


@pytest.mark.parametrize("value", [-1, 1.5, True, "64"])
def test_an_unbounded_or_malformed_cache_cap_is_refused(smollm2_path: Path, value: Any) -> None:
    with pytest.raises(ValueError, match="cache_ram_mib"):
        LlamaServerBackend().spec_for(smollm2_path, cache_ram_mib=value)


def test_the_cache_cap_is_checked_and_reaches_the_server() -> None:
    """The prompt-cache cap is a bounded, checked number in both placements (in this
    process it caps the saved prompt states, see tests/test_prefix_reuse.py)."""
    from langchain_setraf import GGUFLLM

    with pytest.raises(ValueError, match="cache_ram_mib"):
        GGUFLLM(cache_ram_mib=-1)
    with pytest.raises(ValueError, match="cache_ram_mib"):
        GGUFLLM(server=True, cache_ram_mib=-1)
    assert GGUFLLM(cache_ram_mib=64)._backend_and_spec()[1].options_dict["cache_ram_mib"] == 64
    assert (
        GGUFLLM(server=True, cache_ram_mib=64)._backend_and_spec()[1].options_dict["cache_ram_mib"]
        == 64
    )


def test_bad_timing_settings_are_named(
    runtime: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LlamaServerBackend()
    spec = backend.spec_for(smollm2_path, n_ctx=N_CTX, n_parallel=1)
    monkeypatch.setenv(EXIT_GRACE_ENV, "soon")
    with pytest.raises(ValueError, match=f"{EXIT_GRACE_ENV}='soon'"):
        backend.load(spec)
    monkeypatch.setenv(EXIT_GRACE_ENV, "5")
    monkeypatch.setenv(LOG_MAX_BYTES_ENV, "100")
    with pytest.raises(ValueError, match=f"{LOG_MAX_BYTES_ENV}='100'"):
        backend.load(spec)
    assert _ours(runtime) == []  # refused before anything was started


# -- the supervisor's watch, on real files and processes (no model) ----------------------------


@pytest.fixture()
def health_port() -> Iterator[int]:
    """A loopback HTTP server answering ``/health`` with 200, as a ready llama.cpp does."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def _watch(tmp_path: Path, port: int, keep_alive: float, grace: float) -> Any:
    from langchain_setraf.backends.llama_server.supervisor import IdleWatch

    lock = tmp_path / "k.lock"
    lock.touch(mode=0o600)
    return IdleWatch(
        state_path=tmp_path / "k.json",
        lock_path=lock,
        launch_id="L1",
        port=port,
        keep_alive=keep_alive,
        exit_grace=grace,
        watch_path=tmp_path / "k.L1.watch",
    )


def _write_state(path: Path, launch_id: str, clients: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"launch_id": launch_id, "clients": clients}))


def test_the_watch_counts_only_live_clients_of_its_own_launch(
    tmp_path: Path, health_port: int
) -> None:
    watch = _watch(tmp_path, health_port, keep_alive=0, grace=0)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        start = psutil.Process(holder.pid).create_time()
        live = {"pid": holder.pid, "start": start}
        _write_state(watch.state_path, "L1", [live])
        assert watch.live_clients() == 1 and not watch.tick()
        assert watch.idle_since is None
        # the same pid with another start time is a reused pid, not the client
        _write_state(watch.state_path, "L1", [{"pid": holder.pid, "start": start - 100}])
        assert watch.live_clients() == 0
        # a state naming another launch has no client for this server
        _write_state(watch.state_path, "L2", [live])
        assert watch.live_clients() == 0
        # a state being rewritten is no news: nothing decided on it
        watch.state_path.write_text('{"launch_id": "L1", "cli')
        assert watch.live_clients() is None and not watch.tick()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    _write_state(watch.state_path, "L1", [live])  # its only client is dead now
    assert watch.tick()  # keep_alive 0 + grace 0: due at once
    published = json.loads(watch.watch_path.read_text())
    assert published["exits_at"] == published["idle_since"] == watch.idle_since
    assert stat.S_IMODE(watch.watch_path.stat().st_mode) == 0o600
    assert "no live client" in watch.reason()


def test_the_watch_never_stops_a_server_while_a_client_holds_the_lock(
    tmp_path: Path, health_port: int
) -> None:
    import fcntl

    watch = _watch(tmp_path, health_port, keep_alive=0, grace=0)
    _write_state(watch.state_path, "L1", [])
    assert watch.tick()
    with open(watch.lock_path) as held:  # a client attaching holds the lock
        fcntl.flock(held, fcntl.LOCK_EX)
        assert watch.confirm() is None
    fd = watch.confirm()
    assert fd is not None  # free again, still no client: the stop may go ahead
    os.close(fd)


def test_a_server_that_is_still_loading_is_not_idle(tmp_path: Path) -> None:
    from langchain_setraf.backends.llama_server.managed import free_port

    watch = _watch(tmp_path, free_port(), keep_alive=0, grace=0)  # nothing answers
    _write_state(watch.state_path, "L1", [])
    assert not watch.tick() and not watch.ready and watch.idle_since is None
