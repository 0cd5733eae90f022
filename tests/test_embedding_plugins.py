"""Entry-point plugins for third-party embedding backends: real distributions from
tests/plugins/ installed with pip into a temporary site directory, used in child
processes through ``init_embeddings``.

- ``setraf-bow``: a bag-of-words embedding backend (``embeddings_class``), found by name
  and by ``auto:`` (its ``accepts``), leased from the shared cache;
- ``setraf-partial-embed``: names an ``embeddings_class`` but lacks the rest of the
  protocol: refused, named, never half-used;
- ``setraf-ngram``: a text backend with no embeddings class: refused with its name and
  distribution, and the backends that do offer one.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from helpers.plugin_site import install_plugins, run_with_plugins

VOCAB = "clay sand granite water resistive conductive"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory with the three plugin distributions installed by pip."""
    target = tmp_path_factory.mktemp("embedding-plugins")
    return install_plugins(target, "setraf-bow", "setraf-partial-embed", "setraf-ngram")


@pytest.fixture()
def vocab(tmp_path: Path) -> Path:
    path = tmp_path / "geology.vocab"
    path.write_text("\n".join(VOCAB.split()) + "\n")
    return path


def test_a_plugins_embeddings_class_is_discovered_and_used(
    site: Path, vocab: Path, tmp_path: Path
) -> None:
    code = """
    import asyncio, json, sys
    from langchain_setraf import get_model_cache, init_embeddings, list_backends
    info = {b.name: b for b in list_backends()}["bow"]
    by_name = init_embeddings("setraf:bow:" + sys.argv[1], query_prefix="clay ")
    by_path = init_embeddings("auto:" + sys.argv[1])
    docs = by_name.embed_documents(["Clay, wet clay and sand.", "Dry granite."])
    query = by_name.embed_query("water")  # the prefix makes it "clay water"
    also = asyncio.run(by_path.aembed_documents(["granite"]))
    cache = get_model_cache()
    loaded = [m.key.backend for m in cache.loaded()]
    print(json.dumps({
        "info": [info.distribution, info.version, info.builtin, info.importable],
        "types": [type(by_name).__name__, type(by_path).__name__],
        "docs": docs, "query": query, "also": also,
        "loads": cache.total_loads, "loaded": loaded,
        "released": by_path.release(), "after": len(cache.loaded()),
        "tokens": by_name.count_tokens("wet clay and sand"),
    }))
    """
    data = run_with_plugins(site, code, str(vocab))
    assert data["info"] == ["setraf-bow", "0.3.0", False, True]
    assert data["types"] == ["BagOfWordsEmbeddings", "BagOfWordsEmbeddings"]
    # clay x2, sand x1 over (clay sand granite water resistive conductive), normalised
    assert data["docs"][0] == pytest.approx([2 / math.sqrt(5), 1 / math.sqrt(5), 0, 0, 0, 0])
    assert data["docs"][1] == pytest.approx([0, 0, 1, 0, 0, 0])
    assert data["query"] == pytest.approx([1 / math.sqrt(2), 0, 0, 1 / math.sqrt(2), 0, 0])
    assert data["also"] == [data["docs"][1]]
    # two objects, one load in the shared cache; release frees it for both
    assert data["loads"] == 1 and data["loaded"] == ["bow"]
    assert data["released"] is True and data["after"] == 0
    assert data["tokens"] == 4


def test_an_incomplete_embedding_plugin_is_refused_by_name(site: Path, vocab: Path) -> None:
    code = """
    import json, sys
    from langchain_setraf import get_model_cache, init_embeddings, list_backends
    from langchain_setraf.plugins import IncompleteBackendError
    info = {b.name: b for b in list_backends()}["partial-embed"]
    try:
        init_embeddings("partial-embed:" + sys.argv[1])
        error = None
    except IncompleteBackendError as e:
        error = str(e)
    auto = type(init_embeddings("auto:" + sys.argv[1])).__name__
    print(json.dumps({"importable": info.importable, "listed": info.error, "error": error,
                      "auto": auto, "loads": get_model_cache().total_loads}))
    """
    data = run_with_plugins(site, code, str(vocab))
    assert data["importable"] is False
    error = data["error"]
    assert error == data["listed"]  # the same error when listed and when used
    assert "backend 'partial-embed' (setraf-partial-embed 0.1.0" in error
    assert "entry point partial-embed = setraf_partial_embed:PartialEmbeddingBackend" in error
    assert "missing concurrent, owns_keep_alive, llm_class, chat_class, model_field" in error
    assert "embeddings_class" not in error.split("missing")[1].split(";")[0]
    assert data["auto"] == "BagOfWordsEmbeddings" and data["loads"] == 0


def test_a_plugin_without_embeddings_is_named(site: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the clay layer is wet")
    code = """
    import json, sys
    from langchain_setraf import init_embeddings, init_llm
    from langchain_setraf.plugins import UnknownBackendError
    try:
        init_embeddings("setraf:ngram:" + sys.argv[1])
        error = None
    except UnknownBackendError as e:
        error = str(e)
    print(json.dumps({"error": error, "llm": type(init_llm("ngram:" + sys.argv[1])).__name__}))
    """
    data = run_with_plugins(site, code, str(corpus))
    assert data["error"] is not None
    assert data["error"].startswith(
        "backend 'ngram' (setraf-ngram 0.1.0) provides no embeddings class "
        "(its embeddings_class is None); backends that do: "
    )
    offered = data["error"].rsplit(": ", 1)[1].split(", ")
    assert {"bow", "gguf", "llama-server", "openai", "transformers"} <= set(offered)
    assert "ngram" not in offered and "partial-embed" not in offered
    assert data["llm"] == "NGramLLM"  # its LLM class is unaffected
