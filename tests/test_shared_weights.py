"""One GGUF for generation and embeddings: one model load, two contexts (#25).

The real SmolLM2 GGUF serves ``GGUFLLM`` / ``ChatGGUF`` and ``GGUFEmbeddings`` (mean
pooling: a generation model declares none) in one process, through the one cache: the
weights are loaded once (the cache's ``weight_loads``, ``shared_weights()``, and one
mapping of the file in ``/proc/self/maps``), counted once in the budget, kept while
either context uses them, and freed with the last one (RSS back to the pre-load level,
in a child process as tests/test_errors_and_memory.py measures ``GGUFLLM.release()``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from langchain_setraf import (
    GGUFLLM,
    ChatGGUF,
    GGUFEmbeddings,
    InsufficientMemoryError,
    ModelCache,
    loaded_memory,
)
from langchain_setraf.backends.gguf.backend import GGUFBackend
from langchain_setraf.backends.gguf.embedding import GGUFEmbeddingBackend
from langchain_setraf.backends.gguf.weights import GGUFWeightsBackend

HELPERS = Path(__file__).parent / "helpers"
MB = 1 << 20


def _maps(path: Path) -> int:
    """Mappings of ``path`` in this process: one per mmapped load of the file."""
    real = str(path.resolve())
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if line.rstrip().endswith(real))


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def _pair(path: Path, **emb: object) -> tuple[GGUFLLM, GGUFEmbeddings]:
    llm = GGUFLLM(model_path=str(path), max_tokens=4, temperature=0, seed=1)
    return llm, GGUFEmbeddings(model_path=str(path), pooling="mean", n_batch=128, **emb)  # type: ignore[arg-type]


def test_chat_and_embeddings_of_one_file_load_the_weights_once(
    smollm2_path: Path, cache: ModelCache
) -> None:
    llm, emb = _pair(smollm2_path)
    assert llm.invoke("The capital of France is")
    assert _maps(smollm2_path) == 1
    vector = emb.embed_query("apparent resistivity of wet clay")
    assert len(vector) == 576 and abs(sum(x * x for x in vector) - 1.0) < 1e-6
    # two contexts, one llama_model: one weights load, one mapping of the file
    assert cache.total_loads == 2 and sum(cache.weight_loads.values()) == 1
    assert _maps(smollm2_path) == 1
    (weights,) = cache.shared_weights()
    assert weights.key.backend == "gguf-weights"
    assert {c.backend for c in weights.contexts} == {"gguf", "gguf-embeddings"}
    # the weights counted once: in the first context loaded, the other shows 0
    rows = {m.backend: m for m in cache.loaded()}
    assert rows["gguf"].memory is not None and rows["gguf"].memory.weights > 90 * MB
    assert rows["gguf-embeddings"].memory is not None
    assert rows["gguf-embeddings"].memory.weights == 0
    assert rows["gguf-embeddings"].weights_shared_with == (rows["gguf"].key,)
    assert rows["gguf"].weights_shared_with == (rows["gguf-embeddings"].key,)
    text = "\n".join(str(m) for m in loaded_memory())
    assert text.count("weights shared with") == 2
    # and the budget counts them once too: weights + both contexts fits it exactly
    whole = sum(m.estimated_bytes for m in cache.loaded())
    assert whole == weights.estimated_bytes + sum(
        m.estimated_bytes - (m.memory.weights if m.memory else 0) for m in cache.loaded()
    )
    # each answers as it did alone, in any order
    assert emb.embed_query("apparent resistivity of wet clay") == vector
    assert llm.invoke("The capital of France is")


def test_the_chat_class_shares_them_too(smollm2_path: Path, cache: ModelCache) -> None:
    chat = ChatGGUF(model_path=str(smollm2_path), max_tokens=4, temperature=0, seed=1)
    emb = GGUFEmbeddings(model_path=str(smollm2_path), pooling="last", n_batch=64)
    vectors = emb.embed_documents(["granite", "clay"])
    assert chat.invoke([HumanMessage("Hello")]).content
    assert sum(cache.weight_loads.values()) == 1 and _maps(smollm2_path) == 1
    assert len(vectors) == 2 and _cos(vectors[0], vectors[1]) < 0.9999


@pytest.mark.parametrize("first", ["chat", "embeddings"])
def test_releasing_one_keeps_the_weights_for_the_other(
    first: str, smollm2_path: Path, cache: ModelCache
) -> None:
    llm, emb = _pair(smollm2_path)
    answer = llm.invoke("The capital of France is")
    vector = emb.embed_query("granite")
    gone, kept = (llm, emb) if first == "chat" else (emb, llm)
    assert gone.release() is True
    assert not gone.is_loaded and kept.is_loaded
    (weights,) = cache.shared_weights()  # still loaded, for the context left
    assert len(weights.contexts) == 1 and _maps(smollm2_path) == 1
    assert sum(cache.weight_releases.values()) == 0
    (row,) = cache.loaded()
    assert row.weights_shared_with == () and row.memory is not None and row.memory.weights > 0
    if first == "chat":
        assert emb.embed_query("granite") == vector
    else:
        assert llm.invoke("The capital of France is") == answer
    assert kept.release() is True
    assert cache.shared_weights() == [] and cache.loaded() == []
    assert sum(cache.weight_releases.values()) == 1 and _maps(smollm2_path) == 0
    # the next call loads them again, once
    assert gone.release() is False
    vector_again = emb.embed_query("granite")
    assert sum(cache.weight_loads.values()) == 2 and vector_again == vector


def test_the_budget_counts_the_weights_once(smollm2_path: Path, cache: ModelCache) -> None:
    llm, emb = _pair(smollm2_path)
    w_backend = GGUFWeightsBackend()
    weights_bytes = w_backend.estimate_bytes(w_backend.spec_for(smollm2_path))
    chat_bytes = llm.estimate_memory()
    emb_bytes = emb.estimate_memory()
    assert weights_bytes > 90 * MB
    # room for the weights once and both contexts, not for the weights twice
    evicted = len(cache.evictions)  # earlier tests' evictions stay listed
    cache.max_memory = chat_bytes + emb_bytes - weights_bytes + 4 * MB
    try:
        assert llm.invoke("The capital of France is")
        assert emb.embed_query("granite")  # fits: its weights are already counted
        assert cache.evictions[evicted:] == [] and len(cache.loaded()) == 2
        cache.release_all()
        # the same two with weights options that differ: two loads, which do not fit
        other = GGUFEmbeddings(
            model_path=str(smollm2_path), pooling="mean", n_batch=128, use_mmap=False
        )
        key = llm.load().key
        with cache.lease(GGUFBackend(), key, lock=False):  # busy: nothing to evict
            with pytest.raises(InsufficientMemoryError, match="budget"):
                other.embed_query("granite")
    finally:
        cache.max_memory = None


def test_different_weight_options_load_the_file_twice(
    smollm2_path: Path, cache: ModelCache
) -> None:
    llm = GGUFLLM(model_path=str(smollm2_path), max_tokens=2, temperature=0)
    emb = GGUFEmbeddings(model_path=str(smollm2_path), pooling="mean", n_batch=64, use_mmap=False)
    assert llm.invoke("Hi") and emb.embed_query("granite")
    assert sum(cache.weight_loads.values()) == 2
    assert _maps(smollm2_path) == 1  # the use_mmap=False copy is read, not mapped
    assert [len(w.contexts) for w in cache.shared_weights()] == [1, 1]
    assert all(m.weights_shared_with == () for m in cache.loaded())


def test_two_generation_contexts_keep_a_copy_each(smollm2_path: Path, cache: ModelCache) -> None:
    """Sharing is one generation context with one embeddings context: a second chat model
    of the file (another ``n_ctx``) loads its own copy, as before; the embeddings context
    joins one of them."""
    short = GGUFLLM(model_path=str(smollm2_path), n_ctx=512, max_tokens=2, temperature=0)
    long = GGUFLLM(model_path=str(smollm2_path), n_ctx=1024, max_tokens=2, temperature=0)
    emb = GGUFEmbeddings(model_path=str(smollm2_path), pooling="mean", n_batch=64)
    assert short.invoke("Hi") and long.invoke("Hi") and emb.embed_query("granite")
    assert sum(cache.weight_loads.values()) == 2 and _maps(smollm2_path) == 2
    assert sorted(len(w.contexts) for w in cache.shared_weights()) == [1, 2]
    assert all(m.memory is not None for m in cache.loaded())
    assert [m.memory.weights > 0 for m in cache.loaded() if m.memory].count(True) == 2


def test_a_direct_backend_load_keeps_its_own_weights(smollm2_path: Path) -> None:
    """``GGUFBackend.load`` outside the cache owns its model, as before."""
    backend = GGUFBackend()
    handle = backend.load(backend.spec_for(smollm2_path, n_ctx=256))
    try:
        assert _maps(smollm2_path) == 1 and handle.count_tokens("granite") > 0
    finally:
        handle.close()
    assert _maps(smollm2_path) == 0
    emb = GGUFEmbeddingBackend()
    e = emb.load(emb.spec_for(smollm2_path, pooling="mean", n_batch=64))
    try:
        assert len(e.embed(["granite"], truncate=False)[0]) == 576
    finally:
        e.close()
    assert _maps(smollm2_path) == 0


@pytest.mark.slow
@pytest.mark.parametrize("order", ["chat-first", "embeddings-first"])
def test_releasing_both_gives_the_memory_back(order: str) -> None:
    """In a child process: RSS back to the pre-load level whichever is released first,
    no more left behind than ``GGUFLLM`` alone leaves (tests/helpers/memory_probe.py)."""

    def child(*args: str) -> dict:  # type: ignore[type-arg]
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    shared = child(str(HELPERS / "shared_weights_probe.py"), order)
    alone = child(str(HELPERS / "memory_probe.py"), "gguf", "1")
    p = shared["points"]
    assert shared["weight_loads"] == 1 and shared["weight_releases"] == 1
    assert shared["still_answers"]
    assert [p[k]["maps"] for k in ("baseline", "chat", "both", "first_released")] == [0, 1, 1, 1]
    assert p["both_released"]["maps"] == 0
    # the embeddings context maps no second copy of the weights
    assert p["both"]["file"] - p["chat"]["file"] < 4 * MB
    left = p["both_released"]["rss"] - p["baseline"]["rss"]
    alone_left = alone["cycles"][0]["released"] - alone["baseline"]
    loaded = p["both"]["rss"] - p["baseline"]["rss"]
    assert loaded > 150 * MB, f"both loaded added only {loaded / MB:.0f} MB"
    assert left <= alone_left + 4 * MB, (
        f"releasing both left {left / MB:+.1f} MB; GGUFLLM alone leaves {alone_left / MB:+.1f} MB"
    )


def test_setraf_models_shows_the_weights_once(
    smollm2_path: Path, cache: ModelCache, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_setraf.cli import main

    llm, emb = _pair(smollm2_path)
    assert llm.invoke("Hi") and emb.embed_query("granite")
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    rows = {m["backend"]: m for m in json.loads(capsys.readouterr().out)["loaded"]}
    assert rows["gguf"]["memory"]["weights"] > 90 * MB
    assert rows["gguf-embeddings"]["memory"]["weights"] == 0
    assert rows["gguf-embeddings"]["weights_shared_with"] == [llm.load().key.describe()]
    assert main(["models"]) == 0
    assert capsys.readouterr().out.count("weights shared with") == 2


def test_both_contexts_run_at_once(smollm2_path: Path, cache: ModelCache) -> None:
    """The two contexts have a generation lock each: an embedding call runs while a
    generation does, on the same weights, and both give what they give alone."""
    import threading

    llm, emb = _pair(smollm2_path)
    texts = ["granite", "wet clay", "saline groundwater"] * 4
    answer, vectors = llm.invoke("The capital of France is"), emb.embed_documents(texts)
    got: dict[str, object] = {}

    def embed() -> None:
        for _ in range(3):
            got.setdefault("vectors", []).append(emb.embed_documents(texts))  # type: ignore[union-attr]

    worker = threading.Thread(target=embed)
    worker.start()
    answers = [llm.invoke("The capital of France is") for _ in range(3)]
    worker.join(timeout=300)
    assert not worker.is_alive()
    assert answers == [answer] * 3
    assert got["vectors"] == [vectors] * 3
    assert sum(cache.weight_loads.values()) == 1
