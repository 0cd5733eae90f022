"""GGUFEmbeddings(server=True): the real all-MiniLM-L6-v2 GGUF in a managed llama.cpp server.

Real servers (``--embeddings``, the xllamacpp wheel hosted in a child process, or the
``llama-server`` engine through ``$LLAMA_SERVER_BIN``) on 127.0.0.1, in a private runtime
directory; every server the module started is killed at its end, even on failure.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from helpers.managed_servers import gone, kill_servers
from langchain_setraf import GGUFEmbeddings, TextTooLongError
from langchain_setraf.backends.gguf.file import GGUFFormatError
from langchain_setraf.backends.llama_server.backend import LlamaServerBackend
from langchain_setraf.backends.llama_server.embedding import (
    LlamaServerEmbeddingBackend,
    ManagedEmbeddingHandle,
)
from langchain_setraf.backends.llama_server.engine import (
    ENGINE_ENV,
    Engine,
    ServerArgs,
    server_argv,
)
from langchain_setraf.backends.llama_server.managed import (
    ManagedServer,
    running_servers,
    spec_key,
)
from langchain_setraf.cache import InsufficientMemoryError, ModelCache, get_model_cache

pytestmark = pytest.mark.slow

TEXTS = ["Clay is conductive.", "Granite is resistive.", "Saline water", "", "sand " * 30]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private runtime directory for the module; afterwards its servers are killed."""
    directory = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SETRAF_RUNTIME_DIR", str(directory))
        patch.delenv(ENGINE_ENV, raising=False)
        patch.setenv("SETRAF_SERVER_START_TIMEOUT", "120")
        try:
            yield directory
        finally:
            kill_servers(directory)


@pytest.fixture(scope="module")
def local(minilm_gguf: Path) -> Iterator[list[list[float]]]:
    """The in-process vectors of TEXTS (raw), the model released afterwards."""
    emb = GGUFEmbeddings(model_path=str(minilm_gguf), n_threads=1, normalize=False)
    try:
        yield emb.embed_documents(TEXTS)
    finally:
        emb.release()


def _served(path: Path, **kwargs: object) -> GGUFEmbeddings:
    kwargs.setdefault("n_threads", 1)
    kwargs.setdefault("n_parallel", 2)
    return GGUFEmbeddings(model_path=str(path), server=True, **kwargs)  # type: ignore[arg-type]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _handle(emb: GGUFEmbeddings) -> ManagedEmbeddingHandle:
    with emb._lease() as handle:
        assert isinstance(handle, ManagedEmbeddingHandle)
        return handle


def test_the_servers_vectors_are_the_in_process_ones(
    runtime: Path, minilm_gguf: Path, local: list[list[float]], cache: ModelCache
) -> None:
    raw = _served(minilm_gguf, normalize=False)
    unit = _served(minilm_gguf)  # the same server: normalize is this side's
    try:
        served = raw.embed_documents(TEXTS)
        for mine, theirs in zip(served, local, strict=True):
            assert _cosine(mine, theirs) >= 0.999
            assert _norm(mine) == pytest.approx(_norm(theirs), rel=1e-3)  # raw, not unit
        assert all(abs(_norm(v) - 1.0) < 1e-6 for v in unit.embed_documents(TEXTS))
        [status] = running_servers()
        assert status.running and "llama-server-embeddings" in status.spec
        assert status.info is not None and status.info.engine == "xllamacpp"
    finally:
        raw.release()
    assert not any(s.running for s in running_servers())


def test_two_objects_share_one_server_and_release_stops_it(
    runtime: Path, minilm_gguf: Path, cache: ModelCache
) -> None:
    same = _served(minilm_gguf), _served(minilm_gguf)
    other_timeout = _served(minilm_gguf, timeout=30.0)  # a client option: the same server
    try:
        for emb, text in zip((*same, other_timeout), ("clay", "granite", "sand"), strict=True):
            assert len(emb.embed_query(text)) == 384
        assert _handle(same[0]) is _handle(same[1])  # one cache entry
        pid = _handle(same[0]).info.pid
        assert _handle(other_timeout).info.pid == pid
        assert [s.running for s in running_servers()].count(True) == 1
        assert len(cache.loaded()) == 2
        assert other_timeout.release()
        assert not gone(pid, timeout=1.0)  # still attached through the other entry
        assert len(same[0].embed_query("clay")) == 384
    finally:
        same[0].release()
    assert gone(pid)
    assert cache.loaded() == []
    assert len(same[1].embed_query("clay")) == 384  # the next call starts it again
    assert _handle(same[1]).info.pid != pid
    same[1].release()


def test_the_embedding_server_is_not_the_chat_server(minilm_gguf: Path) -> None:
    """An --embeddings server does not generate: same file, another key and command."""
    emb = LlamaServerEmbeddingBackend().spec_for(minilm_gguf, n_ctx=256, n_batch=256)
    chat = LlamaServerBackend().spec_for(minilm_gguf, n_ctx=256, n_batch=256)
    assert spec_key(emb) != spec_key(chat)
    engine = Engine("xllamacpp", (sys.executable, "-m", "host"))
    emb_argv = server_argv(engine, ManagedServer(emb).server_args(8080))
    chat_argv = server_argv(engine, ManagedServer(chat).server_args(8080))
    assert "--embeddings" in emb_argv and "--jinja" not in emb_argv
    assert emb_argv[emb_argv.index("-ub") + 1] == "256"  # a whole text in one batch
    assert "--embeddings" not in chat_argv and "--jinja" in chat_argv


def test_the_budget_counts_the_server_before_it_starts(
    runtime: Path, minilm_gguf: Path, cache: ModelCache
) -> None:
    emb = _served(minilm_gguf)
    need = emb.estimate_memory()
    assert need > minilm_gguf.stat().st_size  # weights + buffers + the processes
    cache.max_memory = need // 2
    try:
        with pytest.raises(InsufficientMemoryError, match="budget"):
            emb.embed_query("clay")
    finally:
        cache.max_memory = None
    assert not any(s.running for s in running_servers())


def test_a_request_without_the_servers_key_is_refused(
    runtime: Path, minilm_gguf: Path, cache: ModelCache
) -> None:
    emb = _served(minilm_gguf)
    try:
        handle = _handle(emb)
        url = handle.info.url + "/v1/embeddings"
        body = {"input": ["clay"], "model": handle.info.alias}
        assert httpx.post(url, json=body, timeout=30).status_code == 401
        wrong = {"Authorization": "Bearer not-the-key"}
        assert httpx.post(url, json=body, headers=wrong, timeout=30).status_code == 401
        assert len(emb.embed_query("clay")) == 384  # the class sends the key
    finally:
        emb.release()


def test_a_text_longer_than_a_slot_is_refused_by_name(
    runtime: Path, minilm_gguf: Path, cache: ModelCache
) -> None:
    emb = _served(minilm_gguf, n_batch=64)
    try:
        with pytest.raises(
            TextTooLongError, match=r"text 1 has \d+ tokens, more than the 64"
        ) as info:
            emb.embed_documents(["clay", "clay " * 100])
        assert "truncate=True" not in str(info.value)  # refused at construction here
        assert len(emb.embed_query("clay")) == 384  # the server is fine
    finally:
        emb.release()


def test_a_generation_model_is_refused_before_a_server_starts(
    runtime: Path, smollm2_path: Path, cache: ModelCache
) -> None:
    before = set(runtime.iterdir())
    with pytest.raises(GGUFFormatError, match=r"declares no embedding pooling.*pooling="):
        _served(smollm2_path).embed_query("clay")
    assert set(runtime.iterdir()) - before <= {p for p in runtime.glob("*.lock")}
    assert not any(s.running for s in running_servers())


def test_arguments_that_contradict_the_managed_server_are_refused(minilm_gguf: Path) -> None:
    path = str(minilm_gguf)
    with pytest.raises(ValueError, match="give one of them"):
        GGUFEmbeddings(model_path=path, server=True, server_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="truncate=True needs the model in this process"):
        GGUFEmbeddings(model_path=path, server=True, truncate=True)
    with pytest.raises(ValueError, match="makes its own random key"), warnings.catch_warnings():
        warnings.simplefilter("error")
        GGUFEmbeddings(model_path=path, server=True, api_key="k")
    with pytest.raises(ValueError, match=r"n_parallel .* needs server=True"):
        GGUFEmbeddings(model_path=path, n_parallel=2)
    with pytest.raises(ValueError, match="n_parallel must be >= 1"):
        GGUFEmbeddings(model_path=path, server=True, n_parallel=0)


def test_the_llama_server_engine_serves_embeddings_too(
    runtime: Path,
    minilm_gguf: Path,
    local: list[list[float]],
    cache: ModelCache,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``$LLAMA_SERVER_BIN`` names the engine: the same flags on its command line (here a
    script running the xllamacpp host; ``SETRAF_TEST_LLAMA_SERVER_BIN`` names a real
    llama-server binary to use instead)."""
    import os

    binary = os.environ.get("SETRAF_TEST_LLAMA_SERVER_BIN")
    if not binary:
        wrapper = tmp_path / "llama-server"
        wrapper.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -m '
            'langchain_setraf.backends.llama_server.xllamacpp_host "$@"\n'
        )
        wrapper.chmod(0o755)
        binary = str(wrapper)
    monkeypatch.setenv(ENGINE_ENV, binary)
    emb = _served(minilm_gguf, normalize=False, n_parallel=1)
    try:
        served = emb.embed_documents(TEXTS)
        assert _handle(emb).info.engine == "llama-server"
        assert all(_cosine(a, b) >= 0.999 for a, b in zip(served, local, strict=True))
    finally:
        emb.release()


def test_the_xllamacpp_host_maps_the_embedding_flags() -> None:
    """Every flag a managed server is started with is one the host knows, and the
    embedding ones reach llama.cpp's params."""
    import xllamacpp

    from langchain_setraf.backends.llama_server.engine import SERVER_FLAGS
    from langchain_setraf.backends.llama_server.xllamacpp_host import build_params, parse_args

    engine = Engine("xllamacpp", (sys.executable, "-m", "host"))
    full = ServerArgs("/m.gguf", 9000, 256, 2, 1, n_batch=256, n_ubatch=256, embedding=True,
                      pooling="cls", sleep_idle_seconds=5, cache_ram_mib=0, alias="m",
                      api_key_file="/k")  # fmt: skip
    argv = server_argv(engine, full)[3:]
    flags = {a for a in argv if a.startswith("-")}
    assert flags <= set(SERVER_FLAGS) and {"--embeddings", "--pooling", "-ub"} <= flags
    parsed = parse_args(argv)  # the host takes the managed command line as it is
    assert (parsed.embedding, parsed.pooling, parsed.ubatch_size) == (True, "cls", 256)
    ns = parse_args(["-m", "x.gguf", "--embeddings", "--pooling", "cls", "-ub", "256"])
    params = build_params(xllamacpp, ns)
    assert params.embedding is True and params.n_ubatch == 256
    assert params.pooling_type == xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_CLS
    plain = build_params(xllamacpp, parse_args(["-m", "x.gguf"]))
    assert plain.embedding is False
    assert plain.pooling_type == xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_UNSPECIFIED


@pytest.fixture(scope="class")
def one_server(runtime: Path) -> Iterator[None]:
    """The class's objects share one server in the module's runtime; stopped after it."""
    yield
    get_model_cache().release_all()


@pytest.mark.usefixtures("one_server")
class TestGGUFEmbeddingsServerIntegration(EmbeddingsIntegrationTests):
    """LangChain's own integration tests, over one managed server for the class."""

    @property
    def embeddings_class(self) -> type[GGUFEmbeddings]:
        return GGUFEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        from helpers.embedding_model import build_minilm_gguf

        return {"model_path": str(build_minilm_gguf()), "server": True, "n_threads": 1}
