"""GGUFEmbeddings and TransformersEmbeddings on the real all-MiniLM-L6-v2.

The GGUF is the f16 file llama.cpp's own converter makes from the package's safetensors
(tests/helpers/embedding_model.py); the reference is sentence-transformers on the same
checkpoint. Each model loads once for the module (the cache shares it between objects):
the whole file costs a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_setraf import (
    CheckpointError,
    GGUFEmbeddings,
    GGUFFormatError,
    InsufficientMemoryError,
    ModelCache,
    TextTooLongError,
    TransformersEmbeddings,
)
from langchain_setraf.backends.gguf.embedding import file_pooling
from langchain_setraf.backends.gguf.file import read_gguf_header
from langchain_setraf.backends.transformers.embedding import read_embedding_checkpoint

pytestmark = pytest.mark.slow

SENTENCES = [
    "The apparent resistivity of wet clay is low, often below 20 ohm-metres.",
    "Fresh granite is highly resistive, thousands of ohm-metres.",
    "A dipole-dipole array was laid out along the river bank.",
    "La résistivité apparente de l'argile saturée est faible.",
    "Le granite sain est très résistant, plusieurs milliers d'ohm-mètres.",
    "",
    "word " * 40,
]

#: (queries with the index of their passage, passages). all-MiniLM-L6-v2 is an English
#: model: its French queries here share the passages' terms (a geophysicist's search
#: words); a French paraphrase ("Quelle roche a une résistivité très élevée ?") ranks the
#: clay passage first with it (docs/embeddings.md).
RETRIEVAL = {
    "en": (
        [
            ("Which rock has a very high resistivity?", 1),
            ("Where is the saline groundwater?", 2),
            ("How deep does the survey investigate?", 3),
            ("What does low resistivity clay look like?", 0),
        ],
        [
            "Clay layers show low resistivity, below 20 ohm-metres, because they hold water.",
            "Unweathered granite bedrock is very resistive, above 2000 ohm-metres.",
            "Saline groundwater near the coast makes the aquifer conductive.",
            "The depth of investigation of the Wenner array is about half the spacing.",
        ],
    ),
    "fr": (
        [
            ("Résistivité du socle granitique sain ?", 1),
            ("Où se trouve la nappe salée ?", 2),
            ("Quelle est la profondeur d'investigation du dispositif Wenner ?", 3),
            ("Pourquoi l'argile est-elle conductrice ?", 0),
        ],
        [
            "L'argile est conductrice : sa résistivité est faible car elle retient l'eau.",
            "Le socle granitique sain est très résistant, plus de 2000 ohm-mètres.",
            "La nappe salée près de la côte rend l'aquifère conducteur.",
            "La profondeur d'investigation du dispositif Wenner vaut environ la moitié "
            "de l'écartement.",
        ],
    ),
}


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> list[list[float]]:
    """sentence-transformers' own vectors of SENTENCES (normalised, as the model says)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)
    vectors = model.encode(SENTENCES, normalize_embeddings=True)
    del model
    return [[float(x) for x in v] for v in vectors]


@pytest.fixture(scope="module")
def gguf_emb(minilm_gguf: Path) -> Iterator[GGUFEmbeddings]:
    emb = GGUFEmbeddings(model_path=str(minilm_gguf), n_threads=1)
    yield emb
    emb.release()


@pytest.fixture(scope="module")
def hf_emb(minilm_dir: Path) -> Iterator[TransformersEmbeddings]:
    emb = TransformersEmbeddings(model=str(minilm_dir))
    yield emb
    emb.release()


# -- LangChain's standard suites -------------------------------------------------------------


def _minilm_gguf_path() -> str:
    from helpers.embedding_model import build_minilm_gguf

    return str(build_minilm_gguf())


def _minilm_dir_path() -> str:
    from helpers.embedding_model import build_minilm_checkpoint

    return str(build_minilm_checkpoint())


class TestGGUFEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[GGUFEmbeddings]:
        return GGUFEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        return {"model_path": _minilm_gguf_path(), "n_threads": 1}


class TestGGUFEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[GGUFEmbeddings]:
        return GGUFEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        return {"model_path": _minilm_gguf_path(), "n_threads": 1}


class TestTransformersEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[TransformersEmbeddings]:
        return TransformersEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        return {"model": _minilm_dir_path()}


class TestTransformersEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[TransformersEmbeddings]:
        return TransformersEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        return {"model": _minilm_dir_path()}


# -- parity with sentence-transformers -------------------------------------------------------


def test_the_f16_gguf_matches_sentence_transformers(
    gguf_emb: GGUFEmbeddings, reference: list[list[float]]
) -> None:
    ours = gguf_emb.embed_documents(SENTENCES)
    cosines = [_cos(a, b) for a, b in zip(ours, reference, strict=True)]
    assert min(cosines) >= 0.99, cosines
    assert all(abs(math.hypot(*v) - 1.0) < 1e-4 for v in ours)  # normalised by default


def test_transformers_embeddings_match_sentence_transformers(
    hf_emb: TransformersEmbeddings, reference: list[list[float]]
) -> None:
    ours = hf_emb.embed_documents(SENTENCES)
    cosines = [_cos(a, b) for a, b in zip(ours, reference, strict=True)]
    assert min(cosines) >= 0.999, cosines
    # the checkpoint's Normalize module applies: unit vectors without being asked
    assert all(abs(math.hypot(*v) - 1.0) < 1e-4 for v in ours)


def test_the_pooling_comes_from_the_models_own_files(minilm_gguf: Path, minilm_dir: Path) -> None:
    assert file_pooling(read_gguf_header(minilm_gguf)) == "mean"
    checkpoint = read_embedding_checkpoint(minilm_dir)
    assert (checkpoint.pooling, checkpoint.normalize, checkpoint.max_tokens) == ("mean", True, 256)


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("which", ["gguf", "hf"])
def test_the_right_passage_ranks_first(
    language: str, which: str, gguf_emb: GGUFEmbeddings, hf_emb: TransformersEmbeddings
) -> None:
    emb = gguf_emb if which == "gguf" else hf_emb
    queries, passages = RETRIEVAL[language]
    docs = emb.embed_documents(passages)
    for query, right in queries:
        q = emb.embed_query(query)
        scores = [_cos(q, d) for d in docs]
        assert max(range(len(docs)), key=scores.__getitem__) == right, (query, scores)


# -- options ---------------------------------------------------------------------------------


def test_prefixes_go_before_queries_and_documents(gguf_emb: GGUFEmbeddings) -> None:
    e5 = gguf_emb.model_copy(update={"query_prefix": "query: ", "document_prefix": "passage: "})
    assert e5.embed_query("clay") == gguf_emb.embed_documents(["query: clay"])[0]
    assert e5.embed_documents(["clay"]) == gguf_emb.embed_documents(["passage: clay"])
    assert e5.embed_query("clay") != gguf_emb.embed_query("clay")


def test_normalize_false_gives_the_pooled_vector(gguf_emb: GGUFEmbeddings) -> None:
    raw = gguf_emb.model_copy(update={"normalize": False}).embed_query("granite")
    unit = gguf_emb.embed_query("granite")
    norm = math.hypot(*raw)
    assert abs(norm - 1.0) > 0.01
    assert max(abs(r / norm - u) for r, u in zip(raw, unit, strict=True)) < 1e-5


def test_a_text_longer_than_the_model_takes_is_named_not_cut(
    gguf_emb: GGUFEmbeddings, hf_emb: TransformersEmbeddings
) -> None:
    long = "resistivity " * 600
    for emb, limit in ((gguf_emb, 512), (hf_emb, 256)):
        with pytest.raises(TextTooLongError) as info:
            emb.embed_documents(["short", long])
        assert (info.value.index, info.value.limit) == (1, limit)
        assert "truncate=True" in str(info.value)
        cut = emb.model_copy(update={"truncate": True}).embed_documents(["short", long])
        assert len(cut) == 2 and len(cut[1]) == 384
    # past the first group of texts handed to the model, the index is still the caller's
    with pytest.raises(TextTooLongError) as info:
        gguf_emb.embed_documents(["clay"] * 70 + [long])
    assert info.value.index == 70


def test_batches_by_tokens_give_the_same_vectors(
    minilm_dir: Path, hf_emb: TransformersEmbeddings
) -> None:
    texts = [f"layer {i}: " + "clay " * (i % 7) for i in range(20)]
    small = TransformersEmbeddings(model=str(minilm_dir), batch_tokens=16)
    try:
        one_by_one = small.embed_documents(texts)
    finally:
        small.release()
    together = hf_emb.embed_documents(texts)
    assert min(_cos(a, b) for a, b in zip(one_by_one, together, strict=True)) > 0.99999


def test_bad_arguments_are_refused_at_construction(minilm_gguf: Path) -> None:
    with pytest.raises(ValueError, match="n_batchh"):
        GGUFEmbeddings(model_path=str(minilm_gguf), n_batchh=8)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="pooling"):
        GGUFEmbeddings(model_path=str(minilm_gguf), pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_tokens"):
        TransformersEmbeddings(model="anything", batch_tokens=0)


def test_documents_must_be_strings(gguf_emb: GGUFEmbeddings) -> None:
    with pytest.raises(TypeError, match="not one string"):
        gguf_emb.embed_documents("clay")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text 1 is a int"):
        gguf_emb.embed_documents(["clay", 3])  # type: ignore[list-item]
    assert gguf_emb.embed_documents([]) == []


def test_a_generation_gguf_is_refused_with_what_to_pass(
    smollm2_path: Path, cache: ModelCache
) -> None:
    emb = GGUFEmbeddings(model_path=str(smollm2_path))
    with pytest.raises(GGUFFormatError, match="pooling='mean'"):
        emb.embed_query("clay")
    assert cache.loaded() == []


def test_n_batch_past_the_files_context_is_refused(minilm_gguf: Path, cache: ModelCache) -> None:
    with pytest.raises(ValueError, match="training context"):
        GGUFEmbeddings(model_path=str(minilm_gguf), n_batch=4096).embed_query("clay")
    assert cache.loaded() == []


def test_a_checkpoint_with_an_unknown_module_is_refused(minilm_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "with-dense"
    shutil.copytree(minilm_dir, copy)
    modules = json.loads((copy / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match="Dense"):
        TransformersEmbeddings(model=str(copy)).embed_query("clay")


def test_pickled_weights_are_refused(minilm_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pickled"
    copy.mkdir()
    for name in ("config.json", "modules.json"):
        shutil.copy(minilm_dir / name, copy / name)
    (copy / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickled"):
        TransformersEmbeddings(model=str(copy)).embed_query("clay")


# -- the cache ---------------------------------------------------------------------------------


def test_objects_share_one_load_and_release_frees_it(minilm_gguf: Path, cache: ModelCache) -> None:
    a = GGUFEmbeddings(model_path=str(minilm_gguf), n_threads=1)
    b = GGUFEmbeddings(model_path=str(minilm_gguf), n_threads=1, query_prefix="q: ")
    assert cache.total_loads == 0  # constructors never load
    a.embed_query("clay")
    b.embed_documents(["granite", "sand"])
    assert cache.total_loads == 1
    (loaded,) = cache.loaded()
    assert (loaded.backend, loaded.users) == ("gguf-embeddings", 2)
    assert a.is_loaded and b.is_loaded
    assert a.release() is True
    assert cache.loaded() == [] and not b.is_loaded
    assert sum(cache.release_counts.values()) == 1
    b.embed_query("clay")  # the next call loads again
    assert cache.total_loads == 2


def test_keep_alive_zero_releases_after_the_call(minilm_dir: Path, cache: ModelCache) -> None:
    emb = TransformersEmbeddings(model=str(minilm_dir), keep_alive=0)
    assert len(emb.embed_query("clay")) == 384
    assert cache.loaded() == []
    assert sum(cache.release_counts.values()) == 1


@pytest.mark.parametrize("which", ["gguf", "hf"])
def test_a_model_over_the_budget_is_refused_before_loading(
    which: str, minilm_gguf: Path, minilm_dir: Path, cache: ModelCache
) -> None:
    emb: GGUFEmbeddings | TransformersEmbeddings = (
        GGUFEmbeddings(model_path=str(minilm_gguf))
        if which == "gguf"
        else TransformersEmbeddings(model=str(minilm_dir))
    )
    need = emb.estimate_memory()
    assert need > 40_000_000  # the weights at least
    cache.max_memory = need // 2
    try:
        with pytest.raises(InsufficientMemoryError, match="budget"):
            emb.embed_query("clay")
    finally:
        cache.max_memory = None
    assert cache.total_loads == 0 and cache.loaded() == []


def test_async_embedding_leaves_the_event_loop_running(gguf_emb: GGUFEmbeddings) -> None:
    texts = [f"borehole {i}: clay over sand over weathered granite" for i in range(48)]
    gguf_emb.embed_query("warm")  # loaded before the measured call

    async def main() -> tuple[list[list[float]], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        try:
            vectors = await gguf_emb.aembed_documents(texts)
        finally:
            done.set()
            await task
        return vectors, ticks

    vectors, ticks = asyncio.run(main())
    assert len(vectors) == 48
    assert ticks > 1  # the loop ran other tasks while the model embedded


# -- the factory -------------------------------------------------------------------------------


def test_init_embeddings_builds_each_class_without_loading(
    minilm_gguf: Path, minilm_dir: Path, cache: ModelCache
) -> None:
    from langchain_setraf import init_embeddings

    for uri in (f"gguf:{minilm_gguf}", f"setraf:gguf:{minilm_gguf}", f"auto:{minilm_gguf}"):
        emb = init_embeddings(uri, query_prefix="query: ")
        assert type(emb) is GGUFEmbeddings
        assert (emb.model_path, emb.query_prefix) == (str(minilm_gguf), "query: ")
    for uri in (f"transformers:{minilm_dir}", f"setraf:{minilm_dir}"):
        hf = init_embeddings(uri)
        assert type(hf) is TransformersEmbeddings and hf.model == str(minilm_dir)
    remote = init_embeddings("setraf:openai:http://127.0.0.1:9/v1", model="minilm")
    assert type(remote) is GGUFEmbeddings
    assert (remote.server_url, remote.server_model) == ("http://127.0.0.1:9/v1", "minilm")
    assert cache.total_loads == 0


def test_init_embeddings_refuses_what_it_cannot_build(minilm_gguf: Path) -> None:
    from langchain_setraf import init_embeddings
    from langchain_setraf.plugins import UnknownBackendError

    served = init_embeddings(f"setraf:llama-server:{minilm_gguf}", n_parallel=2)
    assert type(served) is GGUFEmbeddings and served.server and served.n_parallel == 2
    with pytest.raises(TypeError, match="implies server=True"):
        init_embeddings(f"llama-server:{minilm_gguf}", server=False)
    with pytest.raises(UnknownBackendError, match="no default embedding model"):
        init_embeddings("setraf:default")
    with pytest.raises(UnknownBackendError, match="nope"):
        init_embeddings("nope:/x")


def test_repack_is_a_load_option_off_by_default(
    minilm_gguf: Path, gguf_emb: GGUFEmbeddings
) -> None:
    from langchain_setraf import RepackUnsupportedError
    from langchain_setraf.backends.gguf.repack_probe import repack_verdict

    on = GGUFEmbeddings(model_path=str(minilm_gguf), n_threads=1, repack=True)
    assert gguf_emb.repack is False
    assert on._backend_and_spec()[1] != gguf_emb._backend_and_spec()[1]
    verdict = repack_verdict()
    assert verdict is not None
    try:
        if not verdict.supported:  # the probe refuses before llama.cpp could crash here
            with pytest.raises(RepackUnsupportedError, match="repack=False"):
                on.embed_query("clay")
            return
        vectors = on.embed_documents(SENTENCES[:3])
        reference = gguf_emb.embed_documents(SENTENCES[:3])
        assert min(_cos(a, b) for a, b in zip(vectors, reference, strict=True)) > 0.9999
    finally:
        on.release()


def test_count_tokens_reads_the_tokenizer_only(
    minilm_gguf: Path, minilm_dir: Path, cache: ModelCache
) -> None:
    gguf = GGUFEmbeddings(model_path=str(minilm_gguf), n_threads=1)
    hf = TransformersEmbeddings(model=str(minilm_dir))
    text = "The apparent resistivity of wet clay is low."
    counts = (gguf.count_tokens(text), hf.count_tokens(text))
    assert cache.total_loads == 0  # no weights for a count
    assert counts[0] == counts[1] == 12  # [CLS] + 10 word pieces + [SEP]
    long = "resistivity " * 300
    with pytest.raises(TextTooLongError) as info:
        hf.embed_query(long)
    assert info.value.tokens == hf.count_tokens(long)
    with cache.lease(*gguf._backend_and_spec()) as handle:
        assert handle.count_tokens(long) == gguf.count_tokens(long)
