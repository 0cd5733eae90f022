"""Where a GGUF model runs (in-process, the host's server, a URL) and the defaults that
pick it: contradictory arguments are refused, never ignored; threads default to the
physical cores; ``load()`` and ``eos_token_id()`` are public and load nothing twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from langchain_setraf import GGUFLLM, ChatGGUF, init_chat_model, init_llm
from langchain_setraf.cache import ModelCache
from langchain_setraf.cpu import physical_cores


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"server_url": "http://127.0.0.1:9/v1", "n_ctx": 4096}, "n_ctx would be ignored"),
        ({"server_url": "http://127.0.0.1:9/v1", "model_path": "/m.gguf"}, "model_path"),
        ({"server_url": "http://127.0.0.1:9/v1", "server": True}, "server"),
        ({"server_url": "http://127.0.0.1:9/v1", "n_parallel": 2}, "n_parallel"),
        ({"server_model": "x"}, "server_model needs server_url"),
        ({"n_parallel": 2}, "n_parallel sets the managed server's slots: it needs server=True"),
        ({"server": True, "n_parallel": 0}, "n_parallel must be >= 1"),
        ({"server_url": "http://127.0.0.1:9/v1", "request_timeout": 0}, "request_timeout"),
    ],
)
@pytest.mark.parametrize("cls", [GGUFLLM, ChatGGUF])
def test_contradictory_placement_is_refused(
    cls: type, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_the_backend_follows_the_placement_fields(smollm2_path: Path) -> None:
    backend, spec = GGUFLLM(model_path=str(smollm2_path))._backend_and_spec()
    assert backend.name == "gguf" and spec.options_dict["n_threads"] == physical_cores()
    backend, spec = GGUFLLM(server=True, n_parallel=3, keep_alive=30)._backend_and_spec()
    assert backend.name == "llama-server"
    assert spec.options_dict["n_parallel"] == 3 and spec.options_dict["sleep_idle_seconds"] == 30
    backend, spec = ChatGGUF(server_url="http://127.0.0.1:9/v1")._backend_and_spec()
    assert backend.name == "openai"
    assert init_llm(f"llama-server:{smollm2_path}").server is True
    attached = init_chat_model("openai:http://127.0.0.1:9/v1", model="smol")
    assert isinstance(attached, ChatGGUF) and attached.server_model == "smol"
    with pytest.raises(TypeError, match="implies server=True"):
        init_llm(f"llama-server:{smollm2_path}", server=False)
    with pytest.raises(TypeError, match="pass 'model' or 'server_model'"):
        init_llm("openai:http://127.0.0.1:9/v1", model="a", server_model="b")


def test_an_explicit_thread_count_is_kept(smollm2_path: Path) -> None:
    _, spec = GGUFLLM(model_path=str(smollm2_path), n_threads=1)._backend_and_spec()
    assert spec.options_dict["n_threads"] == 1


def test_physical_cores_counts_cores_not_hyperthreads() -> None:
    allowed = os.sched_getaffinity(0)
    cores = set()
    for cpu in allowed:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        cores.add(((topo / "physical_package_id").read_text(), (topo / "core_id").read_text()))
    assert 1 <= physical_cores() <= len(cores) <= len(allowed)


@pytest.mark.slow
def test_load_is_public_loads_once_and_eos_needs_no_load(
    smollm2_path: Path, cache: ModelCache
) -> None:
    llm = GGUFLLM(model_path=str(smollm2_path), keep_alive=0)
    chat = ChatGGUF(model_path=str(smollm2_path))
    assert llm.eos_token_id() == chat.eos_token_id() == 2  # the file's EOS id, from its vocabulary
    assert not llm.is_loaded and cache.total_loads == 0
    loaded = llm.load()
    assert loaded.backend == "gguf" and loaded.path == str(smollm2_path.resolve())
    assert llm.is_loaded, "load() with keep_alive=0 must keep the model until a call"
    chat.load()
    assert cache.total_loads == 1, "the chat twin shares the loaded model"
    llm.release()
