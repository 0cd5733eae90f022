"""``repack=True`` never takes the process down: a child probes llama.cpp's CPU extra buffer
types once per machine, the verdict is cached privately, and a load the probe says would
crash is refused with :class:`RepackUnsupportedError`."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from langchain_setraf import GGUFLLM, RepackUnsupportedError
from langchain_setraf.backends.gguf import repack_probe
from langchain_setraf.backends.gguf.repack_probe import (
    RepackVerdict,
    machine_key,
    probe_cache_path,
    repack_verdict,
    require_repack,
)
from langchain_setraf.backends.llama_server.engine import Engine, ServerArgs, server_argv

RAW_LLAMA = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, verbose=False)
print(llm.create_completion("The resistivity of clay", max_tokens=8)["choices"][0]["text"])
"""

REFUSAL = """
import json
from langchain_setraf import ChatGGUF, GGUFLLM, RepackUnsupportedError, default_gguf_path
from langchain_setraf.backends.gguf.backend import GGUFBackend
asked = GGUFBackend().spec_for(default_gguf_path(), n_ctx=128, repack=True)
errors = []
for make in (lambda: GGUFLLM(repack=True, max_tokens=4).invoke("Hi"),
             lambda: ChatGGUF(repack=True, max_tokens=4).invoke("Hi"),
             lambda: GGUFBackend().load(asked)):
    try:
        make()
    except RepackUnsupportedError as exc:
        errors.append(str(exc))
text = GGUFLLM(max_tokens=4, temperature=0).invoke("The resistivity of clay")
print(json.dumps({"errors": errors, "text": text}))
"""


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``XDG_CACHE_HOME`` and an empty in-process memo."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(repack_probe, "_MEMO", {})
    return tmp_path / "xdg" / "langchain-setraf"


def test_the_probe_predicts_what_raw_llama_cpp_does_on_this_cpu(
    smollm2_path: Path, private_cache: Path
) -> None:
    """Raw llama-cpp-python with its defaults (extra buffer types on) either runs here or dies
    of exactly the signal the probe reported: the verdict is the truth on both kinds of CPU."""
    verdict = repack_verdict()
    assert verdict is not None
    raw = subprocess.run(
        [sys.executable, "-c", RAW_LLAMA, str(smollm2_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    if verdict.supported:
        assert raw.returncode == 0 and raw.stdout.strip(), raw.stderr[-2000:]
        assert verdict.signal is None
    else:
        assert verdict.signal is not None
        assert raw.returncode == -verdict.signal, (raw.returncode, verdict)
        assert signal.Signals(verdict.signal).name in verdict.detail


def test_repack_true_is_refused_where_the_extra_buffer_types_crash(private_cache: Path) -> None:
    """On a CPU where the probe's child died (SIGILL on AMX Xeons with GCC 12 builds),
    ``GGUFLLM`` and ``ChatGGUF`` with ``repack=True`` (and a backend spec that leaves
    llama.cpp's default on) raise a named error in the caller's process, which lives on and
    generates with ``repack=False``."""
    verdict = repack_verdict()
    assert verdict is not None
    if verdict.supported:
        pytest.skip(
            f"llama.cpp's CPU extra buffer types run on this CPU ({verdict.cpu}): "
            "repack=True is allowed here, there is nothing to refuse"
        )
    proc = subprocess.run(
        [sys.executable, "-c", REFUSAL], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["errors"]) == 3, out
    for message in out["errors"]:
        assert verdict.cpu in message and "repack=False" in message
        assert signal.Signals(verdict.signal or 0).name in message
    assert out["text"].strip()


def test_the_verdict_is_cached_privately_and_reused(private_cache: Path) -> None:
    verdict = repack_verdict()
    assert verdict is not None and verdict.key == machine_key()
    path = probe_cache_path()
    assert path.parent == private_cache
    assert stat.S_IMODE(private_cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["supported"] is verdict.supported
    # a fresh process trusts the cached verdict: a planted one (ours, 0600) is what it uses
    planted = replace(verdict, supported=False, detail="planted verdict", signal=4)
    path.write_text(json.dumps(asdict(planted)))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from langchain_setraf.backends.gguf.repack_probe import require_repack\nrequire_repack()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_CACHE_HOME": str(private_cache.parent)},
    )
    assert proc.returncode == 1 and "RepackUnsupportedError" in proc.stderr
    assert "planted verdict" in proc.stderr


def _fake_probe(calls: list[str]) -> object:
    def probe(model_path: str, key: str = "") -> RepackVerdict:
        calls.append(str(model_path))
        return RepackVerdict(True, "test cpu", "fake probe", None, key)

    return probe


def test_a_linked_or_foreign_cache_file_is_not_trusted_nor_written_through(
    private_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(repack_probe, "run_probe", _fake_probe(calls))
    private_cache.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim.json"
    forged = RepackVerdict(False, "forged", "forged verdict", 4, machine_key())
    victim.write_text(json.dumps(asdict(forged)))
    victim.chmod(0o600)
    probe_cache_path().symlink_to(victim)
    verdict = repack_verdict()
    assert verdict is not None and verdict.detail == "fake probe" and len(calls) == 1
    assert json.loads(victim.read_text())["detail"] == "forged verdict"  # not written through
    assert not probe_cache_path().is_symlink()
    assert stat.S_IMODE(probe_cache_path().stat().st_mode) == 0o600
    # a cache file others may write to is probed again
    monkeypatch.setattr(repack_probe, "_MEMO", {})
    probe_cache_path().write_text(json.dumps(asdict(forged)))
    probe_cache_path().chmod(0o622)
    assert repack_verdict() is not None and len(calls) == 2


def test_a_stale_key_is_probed_again_and_a_shared_dir_is_not_used(
    private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(repack_probe, "run_probe", _fake_probe(calls))
    private_cache.mkdir(parents=True, mode=0o700)
    stale = RepackVerdict(False, "old", "another build", 4, "0" * 64)
    probe_cache_path().write_text(json.dumps(asdict(stale)))
    probe_cache_path().chmod(0o600)
    require_repack()  # the fake probe says it runs: no error
    assert len(calls) == 1
    assert json.loads(probe_cache_path().read_text())["key"] == machine_key()
    monkeypatch.setattr(repack_probe, "_MEMO", {})
    private_cache.chmod(0o777)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert repack_verdict() is not None
    assert len(calls) == 2
    assert any("not cached there" in str(w.message) for w in caught)
    private_cache.chmod(0o700)


def test_the_refusal_names_the_cpu_the_signal_and_the_fix(
    private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed = RepackVerdict(False, "Example CPU", "a child died with SIGILL (signal 4)", 4, "k")
    monkeypatch.setattr(repack_probe, "repack_verdict", lambda model_path=None: crashed)
    with pytest.raises(RepackUnsupportedError) as info:
        require_repack(what="m.gguf")
    message = str(info.value)
    assert "Example CPU" in message and "SIGILL" in message and "repack=False" in message
    assert "m.gguf" in message


def test_repack_stays_off_unless_asked_for_in_process_and_on_the_managed_server() -> None:
    assert GGUFLLM().repack is False
    engine = Engine("llama-server", ("/bin/llama-server",))
    assert "--no-repack" in server_argv(engine, ServerArgs("/m.gguf", 9000, 512, 1, 2))
    on = ServerArgs("/m.gguf", 9000, 512, 1, 2, repack=True)
    assert "--no-repack" not in server_argv(engine, on)


def test_a_managed_server_spec_without_repack_starts_without_it(smollm2_path: Path) -> None:
    from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
    from langchain_setraf.backends.llama_server.managed import ManagedServer

    spec = LlamaServerBackend().spec_for(smollm2_path, n_ctx=256)
    assert ManagedServer.for_spec(spec).server_args(9000).repack is False
    asked = LlamaServerBackend().spec_for(smollm2_path, n_ctx=256, repack=True)
    assert ManagedServer.for_spec(asked).server_args(9000).repack is True


def test_a_cache_that_cannot_be_written_still_gives_the_verdict(
    private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(repack_probe, "run_probe", _fake_probe(calls))
    probe_cache_path().mkdir(parents=True)  # a directory where the file should be
    with pytest.warns(RuntimeWarning, match="cannot cache the repack probe"):
        verdict = repack_verdict()
    assert verdict is not None and verdict.supported and len(calls) == 1
    assert probe_cache_path().is_dir() and list(private_cache.iterdir()) == [probe_cache_path()]
