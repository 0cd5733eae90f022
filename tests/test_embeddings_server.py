"""GGUFEmbeddings(server_url=...) against real HTTP servers on 127.0.0.1.

The well-behaved server answers ``/v1/embeddings`` with the real all-MiniLM-L6-v2 GGUF
loaded in this process (its answer's items shuffled, as a server may send them); the
others misbehave on purpose (tests/helpers/fault_server.py).
"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.fault_server import FaultServer, Request, error_500, hang, not_found_json, response
from helpers.server_proc import free_port
from langchain_setraf import (
    GGUFEmbeddings,
    ServerResponseError,
    ServerUnavailableError,
)

pytestmark = pytest.mark.slow

TEXTS = ["Clay is conductive.", "Granite is resistive.", "Saline water", "", "sand " * 30]


@pytest.fixture(scope="module")
def local(minilm_gguf: Path) -> Iterator[GGUFEmbeddings]:
    emb = GGUFEmbeddings(model_path=str(minilm_gguf), n_threads=1, normalize=False)
    yield emb
    emb.release()


def _answer(sock: socket.socket, payload: Any) -> None:
    sock.sendall(response(200, json.dumps(payload).encode()))


def _models(req: Request, sock: socket.socket, stop: threading.Event) -> None:
    _answer(sock, {"object": "list", "data": [{"id": "minilm", "object": "model"}]})


@pytest.fixture(scope="module")
def server(local: GGUFEmbeddings) -> Iterator[FaultServer]:
    """An OpenAI-compatible embeddings server backed by the real model."""

    def embeddings(req: Request, sock: socket.socket, stop: threading.Event) -> None:
        body = req.json()
        assert body["model"] == "minilm" and body["encoding_format"] == "float"
        vectors = local.embed_documents(body["input"])
        items = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        random.Random(len(items)).shuffle(items)
        _answer(sock, {"object": "list", "data": items, "model": "minilm"})

    def tokenize(req: Request, sock: socket.socket, stop: threading.Event) -> None:
        body = req.json()
        assert body["add_special"] is True
        _answer(sock, {"tokens": local.prompt_token_ids(body["content"])})

    routes = {"/v1/embeddings": embeddings, "/v1/models": _models, "/tokenize": tokenize}
    with FaultServer(routes) as srv:
        yield srv


def test_server_vectors_are_the_models_in_input_order(
    server: FaultServer, local: GGUFEmbeddings
) -> None:
    remote = GGUFEmbeddings(server_url=server.base_url, normalize=False)
    assert remote.embed_documents(TEXTS) == local.embed_documents(TEXTS)
    unit = GGUFEmbeddings(server_url=server.base_url).embed_query("Clay is conductive.")
    assert abs(sum(x * x for x in unit) - 1.0) < 1e-6  # normalised on this side by default


def test_count_tokens_asks_the_servers_tokenizer(
    server: FaultServer, local: GGUFEmbeddings
) -> None:
    remote = GGUFEmbeddings(server_url=server.base_url)
    assert remote.count_tokens("Clay is conductive.") == local.count_tokens("Clay is conductive.")
    assert remote.count_tokens("Clay is conductive.") > 2


async def test_async_over_the_server(server: FaultServer) -> None:
    remote = GGUFEmbeddings(server_url=server.base_url, server_model="minilm")
    vectors = await remote.aembed_documents(TEXTS[:2])
    assert len(vectors) == 2 and len(vectors[0]) == 384


def test_a_model_the_server_does_not_list_is_named(server: FaultServer) -> None:
    remote = GGUFEmbeddings(server_url=server.base_url, server_model="e5")
    with pytest.raises(ServerResponseError, match=r"does not serve model 'e5'.*minilm"):
        remote.embed_query("clay")


def test_a_server_without_embeddings_says_so() -> None:
    with FaultServer({"/v1/embeddings": not_found_json, "/v1/models": _models}) as srv:
        remote = GGUFEmbeddings(server_url=srv.base_url, max_retries=2)
        with pytest.raises(ServerResponseError, match="--embeddings") as info:
            remote.embed_query("clay")
        assert info.value.status == 404
        # a 404 is not tried again
        assert sum(r.path == "/v1/embeddings" for r in srv.requests) == 1


def test_a_5xx_is_tried_max_retries_times_more() -> None:
    with FaultServer({"/v1/embeddings": error_500, "/v1/models": _models}) as srv:
        remote = GGUFEmbeddings(server_url=srv.base_url, max_retries=1)
        with pytest.raises(ServerResponseError, match="500") as info:
            remote.embed_query("clay")
        assert info.value.status == 500
        assert sum(r.path == "/v1/embeddings" for r in srv.requests) == 2


def test_a_stalled_server_misses_the_deadline() -> None:
    with FaultServer({"/v1/embeddings": hang, "/v1/models": _models}) as srv:
        remote = GGUFEmbeddings(server_url=srv.base_url, timeout=0.5, max_retries=0)
        with pytest.raises(ServerUnavailableError, match=r"request_timeout=0\.5"):
            remote.embed_query("clay")


def test_nothing_listening_is_unavailable() -> None:
    remote = GGUFEmbeddings(
        server_url=f"http://127.0.0.1:{free_port()}/v1", server_model="m", max_retries=0
    )
    with pytest.raises(ServerUnavailableError, match="cannot connect"):
        remote.embed_query("clay")


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"data": [{"index": 0, "embedding": [0.1, 0.2]}]}, "1 vectors for 2 texts"),
        (
            {"data": [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}]},
            "index 0 twice",
        ),
        (
            {"data": [{"index": 0, "embedding": [0.1, 0.2]}, {"index": 1, "embedding": [0.3]}]},
            "vectors of 2 and 1 numbers",
        ),
        (
            {"data": [{"index": 0, "embedding": [[0.1]]}, {"index": 1, "embedding": [[0.3]]}]},
            "per-token vectors",
        ),
        (
            {"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": "AAAA"}]},
            "without a list of numbers",
        ),
        ({"object": "list"}, "without a 'data' list"),
    ],
)
def test_an_answer_that_is_not_one_vector_per_text_is_refused(
    payload: dict[str, Any], why: str
) -> None:
    def bad(req: Request, sock: socket.socket, stop: threading.Event) -> None:
        _answer(sock, payload)

    with FaultServer({"/v1/embeddings": bad, "/v1/models": _models}) as srv:
        remote = GGUFEmbeddings(server_url=srv.base_url, max_retries=0)
        with pytest.raises(ServerResponseError, match=why):
            remote.embed_documents(["clay", "granite"])


def test_the_key_goes_to_a_loopback_server(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SETRAF_EMBED_TEST_KEY", "k-123")
    remote = GGUFEmbeddings(
        server_url=server.base_url, server_model="minilm", api_key_env="SETRAF_EMBED_TEST_KEY"
    )
    remote.embed_query("clay")
    last = [r for r in server.requests if r.path == "/v1/embeddings"][-1]
    assert last.headers.get("authorization") == "Bearer k-123"


def test_api_key_is_the_servers_key_and_never_shown(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    """``api_key=`` over ``server_url`` is sent as the bearer key (as on the chat path),
    with no "has no use" warning, and never appears in the object's repr or dump; giving
    ``api_key_env`` too is refused."""
    from pydantic import SecretStr

    monkeypatch.setenv("OPENAI_API_KEY", "k-from-the-environment")
    remote = GGUFEmbeddings(
        server_url=server.base_url, server_model="minilm", api_key=SecretStr("k-given-456")
    )
    assert not [w for w in recwarn if "api_key has no use" in str(w.message)]
    remote.embed_query("clay")
    last = [r for r in server.requests if r.path == "/v1/embeddings"][-1]
    assert last.headers.get("authorization") == "Bearer k-given-456"
    assert "k-given-456" not in repr(remote) and "k-given-456" not in str(remote.model_dump())
    with pytest.raises(ValueError, match="both name the server's key"):
        GGUFEmbeddings(server_url=server.base_url, api_key="k", api_key_env="MY_KEY")


def test_local_only_options_with_a_server_are_refused(server: FaultServer) -> None:
    with pytest.raises(ValueError, match="n_batch"):
        GGUFEmbeddings(server_url=server.base_url, n_batch=128)
    with pytest.raises(ValueError, match="truncate"):
        GGUFEmbeddings(server_url=server.base_url, truncate=True)
    with pytest.raises(ValueError, match=r"model_path= .* or server_url="):
        GGUFEmbeddings()
    with pytest.raises(ValueError, match=r"model_path= .* or server_url="):
        GGUFEmbeddings(model_path="m.gguf", server_url=server.base_url)
    with pytest.raises(ValueError, match="give server_url"):
        GGUFEmbeddings(model_path="m.gguf", server_model="x")
