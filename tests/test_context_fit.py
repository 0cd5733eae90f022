"""Fitting the context, KV type and slots to the memory left (issue 23), under the
cache's real budget with the real SmolLM2 (the cgroup version is in
``tests/test_cgroup_budget.py``)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest

from langchain_setraf import (
    GGUFLLM,
    ChatGGUF,
    ContextDoesNotFitError,
    ContextFitWarning,
    InsufficientMemoryError,
    get_model_cache,
)
from langchain_setraf.backends.context_fit import candidates, fit_options
from langchain_setraf.backends.options import GGUFOptions, LlamaServerOptions


@pytest.fixture
def budget() -> Iterator[None]:
    """A cache budget that holds SmolLM2 with a 2k f16 context, not with 8k."""
    cache = get_model_cache()
    cache.release_all()
    before = cache.max_memory
    cache.max_memory = GGUFLLM(n_ctx=2048).estimate_memory() + (1 << 20)
    assert GGUFLLM(n_ctx=8192).estimate_memory() > cache.max_memory
    try:
        yield
    finally:
        cache.release_all()
        cache.max_memory = before


def test_candidates_keep_the_context_then_shrink_the_kv_then_the_slots() -> None:
    asked = LlamaServerOptions(n_ctx=4096, n_parallel=2)
    first = list(candidates(asked, floor=2048))[:7]
    assert [(c.n_ctx, c.n_parallel, c.type_k) for c in first] == [
        (4096, 2, "f16"),
        (4096, 2, "q8_0"),
        (4096, 2, "q4_0"),
        (4096, 1, "f16"),
        (4096, 1, "q8_0"),
        (4096, 1, "q4_0"),
        (3840, 2, "f16"),
    ]
    assert min(c.n_ctx for c in candidates(asked, floor=2048)) == 2048
    # an asked context below the floor is the floor
    assert {c.n_ctx for c in candidates(GGUFOptions(n_ctx=1000), floor=2048)} == {1000}
    # flash attention off: the V cache stays f16 (llama.cpp needs it for a quantised V)
    no_fa = list(candidates(GGUFOptions(flash_attn=False), floor=2048))
    assert {c.type_v for c in no_fa} == {"f16"} and {c.type_k for c in no_fa} > {"f16"}


def test_fit_options_picks_the_first_that_fits_and_never_goes_below_the_floor() -> None:
    def cost(o: GGUFOptions) -> int:
        per = {"f16": 4, "q8_0": 2, "q4_0": 1}[o.type_k]
        return 1000 + o.n_ctx * per

    decision = fit_options(GGUFOptions(n_ctx=8192), cost, room=1000 + 8192 * 2, floor=2048)
    assert decision is not None and decision.chosen.n_ctx == 8192
    assert decision.chosen.type_k == "q8_0" and decision.changed
    assert fit_options(GGUFOptions(n_ctx=8192), cost, room=1000 + 2047, floor=2048) is None
    same = fit_options(GGUFOptions(n_ctx=512), cost, room=10**9, floor=2048)
    assert same is not None and not same.changed


@pytest.mark.slow
def test_refusal_names_a_configuration_that_then_loads(budget: None) -> None:
    with pytest.raises(ContextDoesNotFitError) as refused:
        GGUFLLM(n_ctx=8192, max_tokens=4, n_threads=1).invoke("Hi")
    message = str(refused.value)
    assert "the asked context does not" in message and "fit=True" in message
    found = re.search(r"n_ctx=(\d+) with type_k=(\w+), type_v=(\w+)", refused.value.suggestion)
    assert found is not None
    named = GGUFLLM(
        n_ctx=int(found.group(1)),
        type_k=found.group(2),  # type: ignore[arg-type]
        type_v=found.group(3),  # type: ignore[arg-type]
        max_tokens=4,
        temperature=0,
        n_threads=1,
    )
    assert named.invoke("The resistivity of clay")
    assert get_model_cache().total_loads >= 1


@pytest.mark.slow
def test_fit_true_loads_the_best_fitting_configuration_once(budget: None) -> None:
    chat = ChatGGUF(n_ctx=8192, fit=True, max_tokens=4, temperature=0, n_threads=1)
    with pytest.warns(ContextFitWarning, match=r"fit=True: .*n_ctx=8192.*loading n_ctx=\d+"):
        assert chat.invoke("Name a rock.").content is not None
    decision = chat.fitted
    assert decision is not None and decision.changed
    assert decision.asked.n_ctx == 8192 and 2048 <= decision.chosen.n_ctx <= 8192
    assert decision.need <= decision.room
    (loaded,) = get_model_cache().loaded()
    assert loaded.options["n_ctx"] == decision.chosen.n_ctx
    loads = get_model_cache().total_loads
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided once: no second warning, no second load
        chat.invoke("Name another rock.")
    assert get_model_cache().total_loads == loads


@pytest.mark.slow
def test_fit_never_goes_below_its_floor(budget: None) -> None:
    # even q4_0 at 32k (202 MiB of KV) is over a budget that holds a 2k f16 context
    llm = GGUFLLM(n_ctx=32768, fit=True, fit_min_ctx=32768, max_tokens=4, n_threads=1)
    with pytest.raises(InsufficientMemoryError) as refused:
        llm.invoke("Hi")
    assert not isinstance(refused.value, ContextDoesNotFitError)
    assert llm.fitted is None


def test_fit_needs_a_file_it_loads() -> None:
    with pytest.raises(ValueError, match="fit"):
        GGUFLLM(server_url="http://127.0.0.1:1/v1", fit=True)
    with pytest.raises(ValueError, match="fit_min_ctx must be >= 1"):
        GGUFLLM(fit=True, fit_min_ctx=0)


@pytest.mark.slow
def test_fit_over_the_managed_server(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same over the managed server: the server's own budget (weights, every slot's
    KV cache, the prompt cache at its cap, the processes) decides, and slots may shrink."""
    runtime = tmp_path_factory.mktemp("rt")
    runtime.chmod(0o700)
    monkeypatch.setenv("SETRAF_RUNTIME_DIR", str(runtime))
    cache = get_model_cache()
    cache.release_all()
    before = cache.max_memory
    small = ChatGGUF(server=True, n_ctx=2048, n_parallel=2, n_threads=1).estimate_memory()
    cache.max_memory = small + (1 << 20)
    chat = ChatGGUF(server=True, n_ctx=8192, n_parallel=2, fit=True, max_tokens=4,
                    temperature=0, n_threads=1)  # fmt: skip
    try:
        with pytest.warns(ContextFitWarning, match="n_parallel="):
            assert chat.invoke("Name a rock.").content is not None
        decision = chat.fitted
        assert decision is not None and decision.need <= decision.room
        assert isinstance(decision.chosen, LlamaServerOptions)
        assert decision.chosen.n_ctx >= 2048 and decision.chosen != decision.asked
    finally:
        chat.release()
        cache.max_memory = before
