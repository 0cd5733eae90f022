"""Prefix reuse on purpose (issue 23): the ERT request puts its fixed instructions before
the survey, and the in-process prompt cache (``cache_ram_mib``) is bounded, counted by the
estimate and restores an earlier prompt's state without changing the answer. Timings are
in ``benchmarks/prefix_reuse_bench.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from langchain_setraf import GGUFLLM, ChatGGUF, ModelCache, loaded_memory
from langchain_setraf.backends.gguf.backend import GGUFBackend
from langchain_setraf.backends.gguf.prompt_cache import PromptStateCache, state_bytes
from langchain_setraf.backends.options import GGUFOptions
from langchain_setraf.ert.chains import _messages, as_summary, spec_of
from langchain_setraf.ert.form import json_schema
from langchain_setraf.ert.i18n import TEXTS

MIB = 1 << 20
REPO = Path(__file__).resolve().parents[1]

PROMPT_A = "Resistivity of wet clay is low because " + "water conducts. " * 30
PROMPT_B = "Granite is resistive because " + "it is dry and dense. " * 30


def _shared(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _common_text(texts: list[str]) -> str:
    a, b = texts
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return a[:n]


def test_two_surveys_share_the_instructions_as_a_prompt_prefix(ert_dir: Path) -> None:
    """The two prompts of two different surveys are the same up to the survey: the system
    message and the form's rules come first, then the facts that describe the kind of
    survey (both are pseudo-sections: what the values are, the depth-of-investigation
    rule), in both languages."""
    chat = ChatGGUF()
    surveys = (REPO / "examples" / "two_layer_wenner.dat", ert_dir / "gimli_slagdump.ohm")
    for lang in ("en", "fr"):
        ids = []
        humans = []
        rendered = []
        for survey in surveys:
            summary = as_summary(survey, lang)
            system, human = _messages(summary, spec_of(summary), lang, "", example=False)
            text = str(human.content)
            humans.append(text)
            rules_end = text.index("\n\n")  # the rules, then the facts
            assert str(summary.survey.title) not in text[:rules_end]
            # as the chain sends it: with the form's JSON schema (response_format), which
            # changes with the survey and so comes after all of the above
            schema = {"type": "json_schema", "schema": json_schema(spec_of(summary))}
            dicts = chat._plan([system, human], {"response_format": schema})[0]
            assert dicts[0]["content"] == system.content
            rendered.append(chat._render(dicts))
            ids.append(list(chat.prompt_token_ids(rendered[-1])))
        common = _shared(ids[0], ids[1])
        system_only = len(
            chat.prompt_token_ids(
                chat._render([{"role": "system", "content": str(system.content)}])
            )
        )
        # more than the system message: the rules of the form are shared too
        assert common > system_only + 60, (lang, common, system_only)
        # ... and the kind lines of the facts, up to the first figure of either survey
        shared_text = _common_text(humans)
        values_line, doi_line = humans[0].split("\n\n")[1].splitlines()[1:3]
        assert values_line.startswith(TEXTS[lang]["summary.values"].split("{", 1)[0])
        assert doi_line.startswith(TEXTS[lang]["summary.doi"].split("{", 1)[0])
        doi_rule = doi_line.rsplit(" (", 1)[0]  # without the survey's depth
        assert values_line in shared_text and doi_rule in shared_text, (lang, shared_text)
        assert str(summary.survey.format) not in shared_text
        # the tokens follow the text: the shared tokens cover the kind lines too (but for
        # the last one or two, which may merge with the next character)
        kind_end = len(chat.prompt_token_ids(_common_text(rendered)))
        assert common >= kind_end - 2, (lang, common, kind_end)


def test_the_prompt_cache_is_refused_unbounded() -> None:
    with pytest.raises(ValueError, match="cache_ram_mib must be an integer >= 0"):
        GGUFOptions(cache_ram_mib=-1)
    with pytest.raises(ValueError, match="cache_ram_mib must be >= 0 MiB"):
        GGUFLLM(cache_ram_mib=-1)
    with pytest.raises(ValueError, match="cache_ram_mib"):
        GGUFLLM(cache_ram_mib=1.5)  # type: ignore[arg-type]


def test_the_estimate_counts_the_prompt_cache_at_its_cap(smollm2_path: Path) -> None:
    backend = GGUFBackend()
    base = backend.estimate_bytes(backend.spec_for(smollm2_path))
    capped = backend.estimate_bytes(backend.spec_for(smollm2_path, cache_ram_mib=64))
    assert capped - base == 64 * MIB
    assert GGUFLLM(cache_ram_mib=64).estimate_memory() - GGUFLLM().estimate_memory() == 64 * MIB
    # a different cap is a different load (it is part of the cache key)
    assert GGUFLLM(cache_ram_mib=64)._backend_and_spec() != GGUFLLM()._backend_and_spec()


def test_the_prompt_cache_restores_an_earlier_prompt_within_its_cap(cache: ModelCache) -> None:
    """A, B, A on one context with room for one saved state: the third call is served from
    the saved state of A (a hit), answers as a model without the cache does, and the cache
    never holds more than its cap."""
    cap_mib = 12
    plain = GGUFLLM(n_ctx=1024, max_tokens=6, temperature=0)
    expected = [plain.invoke(p) for p in (PROMPT_A, PROMPT_B, PROMPT_A)]
    plain.release()

    llm = GGUFLLM(n_ctx=1024, max_tokens=6, temperature=0, cache_ram_mib=cap_mib)
    backend, spec = llm._backend_and_spec()
    answers = []
    sizes = []
    for prompt in (PROMPT_A, PROMPT_B, PROMPT_A):
        answers.append(llm.invoke(prompt))
        [memory] = loaded_memory(cache)
        assert memory.estimate.prompt_cache == cap_mib * MIB
        assert memory.allocated is not None
        sizes.append(memory.allocated.prompt_cache)
    assert answers == expected
    assert all(0 < s <= cap_mib * MIB for s in sizes)
    with cache.lease(backend, spec) as handle:
        store = handle.prompt_cache
        assert isinstance(store, PromptStateCache)
        assert store.saves == 3 and store.hits >= 1
        kept = list(store._states.values())
        assert kept and all(s.scores.shape[0] == 1 for s in kept)  # no logits copy
        assert store.cache_size == sum(state_bytes(s) for s in kept) <= cap_mib * MIB
    llm.release()


class _State:
    """A saved state's shape (what llama-cpp-python's ``LlamaState`` carries), to test the
    store's bookkeeping alone."""

    def __init__(self, size: int) -> None:
        self.llama_state_size = size
        self.scores = np.zeros((512, 4), dtype=np.float32)
        self.input_ids = np.zeros(16, dtype=np.intc)


def test_the_store_evicts_the_least_recently_used_state() -> None:
    extra = 4 * 4 + 16 * 4  # one logits row + the token ids
    store = PromptStateCache(capacity_bytes=2 * (1000 + extra))
    store[(1, 2, 3)] = _State(1000)
    store[(4, 5, 6)] = _State(1000)
    assert store[(1, 2, 3, 9)].llama_state_size == 1000  # longest prefix: (1, 2, 3); now newest
    store[(7, 8)] = _State(1000)  # over the cap: (4, 5, 6), the least recently used, goes
    assert (1, 2) in store and (7,) in store and (4, 5) not in store
    assert store.cache_size == 2 * (1000 + extra) and store.hits == 1 and store.saves == 3
    store[(9,)] = _State(10**6)  # larger than the whole cap: not kept, nothing evicted
    assert (9,) not in store and store.cache_size == 2 * (1000 + extra)
    with pytest.raises(KeyError):
        store[(5,)]


def test_a_state_larger_than_the_cap_is_not_kept(cache: ModelCache) -> None:
    llm = GGUFLLM(n_ctx=1024, max_tokens=2, temperature=0, cache_ram_mib=1)
    llm.invoke(PROMPT_A)  # ~200 tokens: 4.5 MiB of KV state
    [memory] = loaded_memory(cache)
    assert memory.allocated is not None and memory.allocated.prompt_cache == 0
    llm.release()


def test_the_cached_prompt_tokens_a_server_reports_are_read() -> None:
    """llama-server (and OpenAI) report the prompt tokens served from the cache in
    ``usage.prompt_tokens_details.cached_tokens``; anything else there is not a count."""
    from langchain_setraf.backends.base import GenerationStats
    from langchain_setraf.backends.openai_compat import _take_usage

    usage = {"prompt_tokens": 603, "completion_tokens": 9}
    stats = GenerationStats()
    _take_usage({"usage": {**usage, "prompt_tokens_details": {"cached_tokens": 300}}}, stats)
    assert (stats.prompt_tokens, stats.cached_tokens) == (603, 300)
    for details in (
        None,
        {},
        {"cached_tokens": "300"},
        {"cached_tokens": -1},
        {"cached_tokens": True},
    ):
        stats = GenerationStats()
        _take_usage({"usage": {**usage, "prompt_tokens_details": details}}, stats)
        assert stats.prompt_tokens == 603 and stats.cached_tokens is None, details
