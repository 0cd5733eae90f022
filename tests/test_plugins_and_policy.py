"""Entry-point plugins (real distributions installed by the test set-up), the factory,
and the cache's memory policy (estimate, budget, LRU eviction, refusal, keep_alive)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import langchain_setraf
from helpers.plugin_site import install_plugins, run_with_plugins
from langchain_setraf import (
    GGUFLLM,
    InsufficientMemoryError,
    get_backend,
    init_chat_model,
    init_llm,
    list_backends,
    memory_snapshot,
)
from langchain_setraf.backends import BACKEND_ATTRIBUTES, Backend, BackendBase, LoadSpec
from langchain_setraf.backends.base import missing_backend_attributes
from langchain_setraf.cache import ModelCache
from langchain_setraf.memory import parse_memory
from langchain_setraf.plugins import UnknownBackendError

PLUGINS = Path(__file__).parent / "plugins"
CORPUS = "the survey shows a clay layer over the bedrock and the clay layer is wet"


@pytest.fixture(scope="module")
def plugin_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plugins")
    return {
        "good": install_plugins(root / "good", "setraf-ngram", "setraf-broken", "setraf-partial"),
        "collide": install_plugins(root / "collide", "setraf-ngram", "setraf-collide"),
    }


def _child(site: Path, code: str, tmp_path: Path, **env: str) -> dict:  # type: ignore[type-arg]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    return run_with_plugins(site, code, str(corpus), env=env)


LIST = """
import json, sys
from langchain_setraf import list_backends
print(json.dumps({b.name: [b.distribution, b.version, b.builtin, b.importable, b.error]
                  for b in list_backends()}))
"""


def test_builtin_backends_are_registered_through_entry_points() -> None:
    infos = {b.name: b for b in list_backends()}
    assert infos["gguf"].builtin and infos["gguf"].importable
    assert infos["gguf"].distribution == "langchain-setraf"
    assert infos["transformers"].value == (
        "langchain_setraf.backends.transformers:TransformersBackend"
    )
    assert get_backend("gguf").name == "gguf"
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'nope'; available: .*gguf"):
        get_backend("nope")


def test_third_party_plugin_works_and_a_broken_one_is_only_reported(
    plugin_sites: dict[str, Path], tmp_path: Path
) -> None:
    data = _child(plugin_sites["good"], LIST, tmp_path)
    assert data["ngram"][:4] == ["setraf-ngram", "0.1.0", False, True]
    assert data["broken"][3] is False
    assert "libimaginary.so" in data["broken"][4]
    assert data["gguf"][3] is True  # the broken plugin breaks nothing else
    use = """
    import json, sys
    from langchain_setraf import init_llm, get_model_cache, get_backend
    a = init_llm("ngram:" + sys.argv[1], max_tokens=3)
    b = init_llm("auto:" + sys.argv[1], max_tokens=3)
    out = [a.invoke("over"), "".join(b.stream("over"))]
    try:
        get_backend("broken")
    except ImportError as e:
        err = str(e)
    print(json.dumps({"out": out, "loads": get_model_cache().total_loads, "err": err,
                      "cls": type(b).__name__}))
    """
    data = _child(plugin_sites["good"], use, tmp_path)
    # greedy, ties by name; invoke gives exactly the streamed text
    assert data["out"] == [" the bedrock and", " the bedrock and"]
    assert data["loads"] == 1 and data["cls"] == "NGramLLM"
    assert "setraf-broken" in data["err"] and "libimaginary.so" in data["err"]


def test_setraf_plugins_allowlist(plugin_sites: dict[str, Path], tmp_path: Path) -> None:
    data = _child(plugin_sites["good"], LIST, tmp_path, SETRAF_PLUGINS="none")
    assert data["ngram"][3] is False and "SETRAF_PLUGINS" in data["ngram"][4]
    assert data["gguf"][3] is True  # built-ins are never filtered
    data = _child(plugin_sites["good"], LIST, tmp_path, SETRAF_PLUGINS="ngram")
    assert data["ngram"][3] is True and data["broken"][3] is False


def test_name_collision_names_both_distributions(
    plugin_sites: dict[str, Path], tmp_path: Path
) -> None:
    code = """
    import json
    from langchain_setraf import get_backend
    try:
        get_backend("ngram")
    except Exception as e:
        print(json.dumps({"type": type(e).__name__, "msg": str(e)}))
    """
    data = _child(plugin_sites["collide"], code, tmp_path)
    assert data["type"] == "BackendCollisionError"
    assert "setraf-ngram 0.1.0" in data["msg"] and "setraf-collide 2.0.0" in data["msg"]


def test_a_plugin_lacking_protocol_attributes_is_refused_at_registration(
    plugin_sites: dict[str, Path], tmp_path: Path
) -> None:
    # setraf-partial's backend does not subclass BackendBase and defines only name, load,
    # estimate_bytes, llm_class and accepts (which says yes to the corpus .txt file)
    code = """
    import json, sys
    from langchain_setraf import get_backend, init_llm, list_backends
    from langchain_setraf.plugins import IncompleteBackendError
    info = {b.name: b for b in list_backends()}["partial"]
    errors = []
    for attempt in (lambda: get_backend("partial"), lambda: init_llm("partial:" + sys.argv[1])):
        try:
            attempt()
        except IncompleteBackendError as e:
            errors.append(str(e))
    auto = init_llm("auto:" + sys.argv[1], max_tokens=3)
    print(json.dumps({"importable": info.importable, "error": info.error, "errors": errors,
                      "auto": [type(auto).__name__, auto.invoke("over")]}))
    """
    data = _child(plugin_sites["good"], code, tmp_path)
    assert data["importable"] is False
    missing = (
        "missing concurrent, owns_keep_alive, chat_class, embeddings_class, model_field, init_aliases, "
        "init_defaults, server_bytes, missing_requirements, tokenize, prompt_tokens, "
        "render_chat, eos_token_id;"
    )
    error = data["error"]
    assert "backend 'partial' (setraf-partial 0.2.0" in error
    assert "entry point partial = setraf_partial:PartialBackend" in error
    assert missing in error and "BackendBase" in error
    # the same error when it is used, by name or through the factory, never an AttributeError
    assert data["errors"] == [error, error]
    # auto: never picks the refused backend, though its accepts() says yes to the file
    assert data["auto"] == ["NGramLLM", " the bedrock and"]


def test_backend_base_gives_every_optional_attribute_its_default(tmp_path: Path) -> None:
    class Minimal(BackendBase):
        name = "minimal"

        def load(self, spec: LoadSpec) -> object:  # type: ignore[override]
            raise AssertionError("not loaded here")

        def estimate_bytes(self, spec: LoadSpec) -> int:
            return 42

    backend = Minimal()
    spec = LoadSpec.create("minimal", (str(tmp_path),), {})
    assert isinstance(backend, Backend) and missing_backend_attributes(backend) == []
    assert (backend.concurrent, backend.owns_keep_alive) == (False, False)
    assert (backend.llm_class, backend.chat_class, backend.model_field) == (None, None, "model")
    assert dict(backend.init_aliases) == {} and dict(backend.init_defaults) == {}
    assert backend.server_bytes(spec) == 42 and backend.accepts(tmp_path) is False
    assert backend.missing_requirements() is None and backend.eos_token_id(spec) is None
    for call in (
        lambda: backend.tokenize(spec, "x"),
        lambda: backend.prompt_tokens(spec, "x"),
        lambda: backend.render_chat(spec, []),
    ):
        with pytest.raises(NotImplementedError, match="backend 'minimal' cannot"):
            call()
    with pytest.raises(TypeError, match="abstract"):
        type("NoLoad", (BackendBase,), {"name": "x"})()
    assert missing_backend_attributes(object()) == list(BACKEND_ATTRIBUTES)


def test_backend_attributes_are_the_protocol_and_every_builtin_has_them() -> None:
    declared = set(Backend.__annotations__) | {
        n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")
    }
    assert set(BACKEND_ATTRIBUTES) == declared
    for name in ("gguf", "transformers", "llama-server", "openai"):
        backend = get_backend(name)
        assert isinstance(backend, BackendBase), name
        assert missing_backend_attributes(backend) == [], name


def test_no_getattr_probe_of_a_backend_attribute() -> None:
    # the protocol declares every attribute: code reads them plainly
    src = Path(langchain_setraf.__file__).parent
    probes = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in BACKEND_ATTRIBUTES
                and "backend" in ast.unparse(node.args[0]).lower()
            ):
                probes.append(f"{path.relative_to(src)}:{node.lineno}: {ast.unparse(node)}")
    assert not probes, probes


def test_factory(hf_checkpoint: Path, smollm2_path: Path) -> None:
    from langchain_setraf import ChatGGUF, ChatTransformers, TransformersLLM

    assert isinstance(init_llm(f"gguf:{smollm2_path}", temperature=0), GGUFLLM)
    assert isinstance(init_chat_model(f"auto:{smollm2_path}"), ChatGGUF)
    llm = init_llm(f"auto:{hf_checkpoint}", quantization="bf16")
    assert isinstance(llm, TransformersLLM) and llm.quantization == "bf16"
    assert isinstance(init_chat_model(f"transformers:{hf_checkpoint}"), ChatTransformers)
    with pytest.raises(
        UnknownBackendError, match="available: gguf, llama-server, openai, transformers"
    ):
        init_llm("vllm:/x")
    with pytest.raises(UnknownBackendError, match="no backend recognises"):
        init_llm(f"auto:{Path(__file__)}")


def test_parse_memory() -> None:
    assert parse_memory("6GB") == 6 * 10**9
    assert parse_memory("512MiB") == 512 * 2**20
    assert 0 < (parse_memory("50%") or 0) < memory_snapshot().system_total
    with pytest.raises(ValueError, match="cannot parse memory amount"):
        parse_memory("lots")


# -- memory policy, real models ------------------------------------------------------------------
def _gguf(n_ctx: int) -> GGUFLLM:
    return GGUFLLM(temperature=0, max_tokens=2, n_ctx=n_ctx)


@pytest.mark.slow
def test_refused_before_allocation_when_over_budget(cache: ModelCache) -> None:
    llm = _gguf(512)
    backend, spec = llm._backend_and_spec()
    need = backend.estimate_bytes(spec)
    cache.max_memory = need // 2
    try:
        before = memory_snapshot().rss
        with pytest.raises(InsufficientMemoryError) as err:
            llm.invoke("x")
        assert err.value.need == need and err.value.budget == need // 2
        assert "needs about" in str(err.value) and "budget" in str(err.value)
        assert memory_snapshot().rss - before < 5 * 2**20, "memory was allocated"
        assert len(cache) == 0 and cache.total_loads == 0
    finally:
        cache.max_memory = None


@pytest.mark.slow
def test_idle_models_are_evicted_lru_first(cache: ModelCache) -> None:
    a, b, c = _gguf(512), _gguf(1024), _gguf(1536)
    sizes = [x._backend_and_spec()[0].estimate_bytes(x._backend_and_spec()[1]) for x in (a, b, c)]
    cache.max_memory = sizes[0] + sizes[1] + sizes[2] // 2  # room for two, not three
    try:
        a.invoke("x")
        b.invoke("x")
        a.invoke("y")  # b is now the least recently used
        c.invoke("x")
        assert cache.evictions == [b._backend_and_spec()[1]]
        assert a.is_loaded and c.is_loaded and not b.is_loaded
    finally:
        cache.max_memory = None


@pytest.mark.slow
def test_busy_models_are_never_evicted(cache: ModelCache) -> None:
    a, b = _gguf(512), _gguf(1024)
    need_b = b._backend_and_spec()[0].estimate_bytes(b._backend_and_spec()[1])
    stream = a.stream("Tell me a long story", max_tokens=64)
    next(stream)  # a is generating
    need_a = cache.loaded()[0].estimated_bytes
    cache.max_memory = need_a + need_b // 2
    try:
        with pytest.raises(InsufficientMemoryError):
            b.invoke("x")
        assert a.is_loaded
    finally:
        stream.close()
        cache.max_memory = None


@pytest.mark.slow
def test_keep_alive(cache: ModelCache) -> None:
    zero = GGUFLLM(max_tokens=2, keep_alive=0)
    zero.invoke("x")
    assert not zero.is_loaded and cache.total_loads == 1
    short = GGUFLLM(max_tokens=2, keep_alive=0.5)
    short.invoke("x")
    assert short.is_loaded
    deadline = time.monotonic() + 10
    while short.is_loaded and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not short.is_loaded, "idle model was not released after keep_alive"
    kept = GGUFLLM(max_tokens=2)
    kept.invoke("x")
    time.sleep(0.8)
    assert kept.is_loaded


ESTIMATE = """
import json, sys
mode = sys.argv[2]
from langchain_setraf import GGUFLLM, TransformersLLM, memory_snapshot
from langchain_setraf.memory import give_back_memory
if mode == "gguf":
    import llama_cpp
    llm = GGUFLLM(temperature=0, max_tokens=4, n_ctx=512)
else:
    llm = TransformersLLM(model=sys.argv[3], quantization=mode, temperature=0, max_tokens=4,
                          n_ctx=64)
backend, spec = llm._backend_and_spec()
if hasattr(backend, "prepare"):
    backend.prepare(spec)
give_back_memory()
est = backend.estimate_bytes(spec)
before = memory_snapshot().rss
llm.invoke("The capital of France is")
print(json.dumps({"estimate": est, "measured": memory_snapshot().rss - before}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gguf", "bf16", "fp32", "nf4"])
def test_estimate_is_within_25_percent_of_measured_rss(
    hf_checkpoint: Path, tmp_path: Path, mode: str
) -> None:
    """The estimate of a load against the RSS it takes. The estimate is the peak of a
    filled context (KV cache and, without flash attention, the attention buffers); a small
    context (512 tokens for llama.cpp, 64 for transformers, whose cache grows with the
    call) keeps that part small, so a short call measures the rest."""
    out = subprocess.run(
        [sys.executable, "-c", ESTIMATE, "", mode, str(hf_checkpoint)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = data["estimate"] / data["measured"]
    print(
        f"{mode}: estimate {data['estimate'] / 2**20:.0f} MB, measured "
        f"{data['measured'] / 2**20:.0f} MB, ratio {ratio:.2f}"
    )
    assert 0.75 <= ratio <= 1.25, f"{mode}: estimate/measured = {ratio:.2f}"


@pytest.mark.slow
def test_setraf_models_cli_lists_backends_and_loaded_models(smollm2_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "langchain_setraf.cli",
            "models",
            "--json",
            "--load",
            f"auto:{smollm2_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {b["name"] for b in data["backends"]} >= {"gguf", "transformers"}
    (model,) = data["loaded"]
    assert model["backend"] == "gguf" and model["path"] == str(smollm2_path.resolve())
    assert model["estimated_bytes"] > 100 * 2**20
    bad = subprocess.run(
        [sys.executable, "-m", "langchain_setraf.cli", "models", "--load", "nope:/x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "unknown backend 'nope'" in bad.stderr
