"""The per-survey form, its rendering in French and English, and the real SmolLM2 filling it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel, FakeListLLM
from pydantic import ValidationError

from langchain_setraf import GGUFLLM, ChatGGUF
from langchain_setraf.ert import check_numbers, interpretation_chain, load_survey, summarize
from langchain_setraf.ert.compat import analyze_data_with_mistral, as_text_generation_pipeline
from langchain_setraf.ert.i18n import TEXTS
from langchain_setraf.ert.interpretation import (
    Choices,
    UnitChoice,
    coerce_choices,
    detect_language,
    json_schema,
    render,
    schema_model,
    spec_of,
    useful_text,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two_layer_wenner.dat"


@pytest.fixture(scope="module")
def two_layer() -> Any:
    return summarize(load_survey(EXAMPLE))


def _trivial(warning: str) -> bool:
    """Whether a warning (in either language) says that fields got their trivial value."""
    return any(warning.startswith(TEXTS[lang]["warn.missing"].split("{")[0]) for lang in TEXTS)


def _all_prose(result: Any) -> str:
    return "\n".join(
        [result.geology, *result.recommendations, result.image_prompt, result.model_notes]
    )


# -- the form ------------------------------------------------------------------------------------
def test_form_has_each_units_own_candidates(two_layer: Any) -> None:
    spec = spec_of(two_layer)
    assert [u.name for u in spec.units] == [u.name for u in two_layer.units]
    schema = json_schema(spec)
    assert "$ref" not in json.dumps(schema)
    assert set(schema["required"]) == {*(u.name for u in spec.units), "water_table", "summary"}
    for unit, us in zip(two_layer.units, spec.units, strict=True):
        enum = schema["properties"][unit.name]["properties"]["material"]["enum"]
        assert enum == [c.material for c in unit.candidates] == list(us.candidates)
    model = schema_model(spec)
    first = spec.units[0]
    ok: dict[str, Any] = {
        u.name: {
            "material": u.candidates[0],
            "alternative": u.candidates[-1],
            "confidence": "medium",
            "reason": "fits the range",
        }
        for u in spec.units
    }
    ok |= {"water_table": {"supported": False, "boundary": "none"}, "summary": "Two layers seen."}
    model.model_validate(ok)
    foreign = next(c for u in spec.units for c in u.candidates if c not in first.candidates)
    bad = {**ok, first.name: {**ok[first.name], "material": foreign}}
    with pytest.raises(ValidationError):  # another unit's candidate is not allowed here
        model.model_validate(bad)


def test_coerce_fills_every_field_and_says_which(two_layer: Any) -> None:
    spec = spec_of(two_layer)
    choices, warnings = coerce_choices(spec, {"U1": {"material": "basalt", "confidence": "HIGH"}})
    assert choices.units[0].material == spec.units[0].candidates[0]
    assert choices.units[0].confidence == "high"
    assert choices.units[0].alternative != choices.units[0].material
    assert any("'basalt' is not one of the unit's candidates" in w for w in warnings)
    assert any("U1.material" in w and "summary" in w for w in warnings)
    empty, _ = coerce_choices(spec, {})
    assert empty.source == "default"


@pytest.mark.parametrize("language", ["fr", "en"])
def test_render_is_grounded_and_in_language(two_layer: Any, language: str) -> None:
    choices, _ = coerce_choices(spec_of(two_layer), {})
    out = render(two_layer, choices, language)
    text = "\n".join([out.geology, *out.recommendations, out.image_prompt])
    assert out.geology and out.recommendations and out.image_prompt
    assert check_numbers(text, two_layer) == []
    assert detect_language(out.geology) == language
    for u in two_layer.units:
        assert f"{u.name}, " in out.geology
    assert "Ω·m" in out.geology and ("investigation" in out.geology)


def test_water_table_claim_is_checked_against_the_data(two_layer: Any) -> None:
    spec = spec_of(two_layer)
    data = {"water_table": {"supported": True, "boundary": spec.boundaries[0]}}
    choices, _ = coerce_choices(spec, data)
    out = render(two_layer, choices, "en")  # resistivity increases from U1 to U2
    assert "do not support" in out.geology
    assert any("water table" in w for w in out.warnings)


def test_useful_text_drops_copies_inventions_and_bad_numbers(two_layer: Any) -> None:
    title = two_layer.survey.title
    prompt = f"facts ... title: {title}"
    kept, warnings = useful_text(
        f"{title}. The survey was funded by the Natural Environment Agency. "
        "A layer of 9000 ohm·m lies at depth. The upper unit is probably clay over a "
        "more resistive unit.",
        two_layer,
        "en",
        prompt,
    )
    assert kept == "The upper unit is probably clay over a more resistive unit."
    assert len(warnings) == 3
    dropped, why = useful_text(
        "La couche supérieure est une argile de la vallée.", two_layer, "en", prompt
    )
    assert dropped == "" and "language" in why[0]


def test_detect_language() -> None:
    assert detect_language("The unit is clay and the water is fresh.") == "en"
    assert detect_language("La couche est une argile et l'eau est douce.") == "fr"
    assert detect_language("U1 U2 42") is None


# -- the chain with fake models -------------------------------------------------------------------
class _Messages(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.seen.append(messages)


def test_chain_reads_a_json_answer_and_streams_snapshots(two_layer: Any) -> None:
    spec = spec_of(two_layer)
    u1 = spec.units[0]
    answer: dict[str, Any] = {
        u.name: {
            "material": u.candidates[1],
            "alternative": u.candidates[0],
            "confidence": "medium",
            "reason": "The resistivity range fits this material.",
        }
        for u in spec.units
    }
    answer["water_table"] = {"supported": False, "boundary": "none"}
    answer["summary"] = "A conductive layer lies over a more resistive one."
    chat = FakeListChatModel(responses=[json.dumps(answer)])
    spy = _Messages()
    snaps = list(
        interpretation_chain(chat, "en").stream(
            {"survey": EXAMPLE, "context": "meadow"}, {"callbacks": [spy]}
        )
    )
    assert snaps[0].status == "preparing" and snaps[-1].status == "done"
    assert any(s.status == "decoding" for s in snaps)
    progress = [s.progress for s in snaps]
    assert progress == sorted(progress) and progress[-1] == 1.0
    result = snaps[-1]
    assert result.choices is not None and result.choices.source == "parsed"
    assert result.units[0].material == u1.candidates[1]
    assert result.units[0].confidence == "medium"
    assert "A conductive layer lies over a more resistive one." in result.model_notes
    assert not any(_trivial(w) for w in result.warnings)
    human = spy.seen[0][0][-1].content
    assert "meadow" in human and " | ".join(u1.candidates) in human


def test_any_text_model_still_gets_a_full_interpretation() -> None:
    llm = FakeListLLM(responses=["I cannot answer that."])
    result = interpretation_chain(llm, "fr").invoke(EXAMPLE)
    assert result.choices is not None and result.choices.source == "default"
    assert result.geology and result.recommendations and result.image_prompt
    assert any(_trivial(w) for w in result.warnings)


# -- the real model -------------------------------------------------------------------------------
CASES = [
    ("two_layer", "fr"),
    ("two_layer", "en"),
    ("gimli_bedrock.dat", "fr"),
    ("geoelectrics_p3_dipoledipole_model.xyz", "en"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "language"), CASES)
def test_real_smollm2_fills_every_field(name: str, language: str, ert_dir: Path) -> None:
    path = EXAMPLE if name == "two_layer" else ert_dir / name
    summary = summarize(load_survey(path), language=language)
    spec = spec_of(summary)
    llm = GGUFLLM(temperature=0.2, max_tokens=64, seed=3)  # the chain raises the budget
    try:
        result = interpretation_chain(llm, language).invoke({"survey": summary})
    finally:
        llm.release()
    schema_model(spec).model_validate_json(result.raw_text)  # parses and fits the form
    assert result.choices is not None and result.choices.source == "constrained"
    assert not any(_trivial(w) for w in result.warnings), result.warnings
    for unit, us in zip(result.units, spec.units, strict=True):
        assert unit.material in us.candidates and unit.alternative in us.candidates
        assert unit.confidence in ("low", "medium", "high") and unit.reason.strip()
    assert result.geology and result.recommendations and result.image_prompt
    assert check_numbers(_all_prose(result), summary) == []
    assert detect_language(result.geology) == language
    assert not any(w.startswith("internal:") for w in result.warnings)


@pytest.mark.slow
def test_real_chat_model_streams_progress() -> None:
    chat = ChatGGUF(temperature=0.2, max_tokens=64, seed=1)
    try:
        snaps = list(interpretation_chain(chat, "en").stream(EXAMPLE))
    finally:
        chat.release()
    decoding = [s for s in snaps if s.status == "decoding"]
    assert len(decoding) > 10  # token by token
    assert decoding[-1].progress > decoding[0].progress
    assert snaps[-1].choices is not None and snaps[-1].choices.source == "constrained"


@pytest.mark.slow
def test_real_legacy_contract() -> None:
    llm = GGUFLLM(seed=5)
    pipe = as_text_generation_pipeline(llm)
    steps: list[float] = []
    try:
        geology, actions, image = analyze_data_with_mistral(
            pipe,
            {"rho_min": 12.0, "rho_max": 480.0, "rho_mean": 95.0, "n_cells": 120},
            progress_callback=lambda m, f: steps.append(f),
            timeout=120,
        )
        out = pipe("[INST] Bonjour [/INST]", max_new_tokens=4, return_full_text=False)
    finally:
        llm.release()
    assert geology.startswith("Résistivités de 12 à 480 Ω·m")
    assert actions.count("\n- ") >= 1 and actions.startswith("- ")
    assert image and "Ω·m" in image
    assert steps == sorted(steps) and steps[-1] == 1.0
    assert isinstance(out, list) and set(out[0]) == {"generated_text"}


def test_choices_model_roundtrip() -> None:
    c = Choices(
        units=[UnitChoice(name="U1", material="clay", alternative="silt", confidence="low")]
    )
    assert Choices.model_validate_json(c.model_dump_json()) == c


def test_chain_async_stream_matches_sync() -> None:
    import asyncio

    chain = interpretation_chain(FakeListLLM(responses=["{}"]), "en")

    async def collect() -> list[Any]:
        return [s async for s in chain.astream(EXAMPLE)]

    snaps = asyncio.run(collect())
    assert snaps[0].status == "preparing" and snaps[-1].status == "done"
    result = asyncio.run(chain.ainvoke(EXAMPLE))
    assert result.geology == snaps[-1].geology


@pytest.mark.slow
def test_real_transformers_llm_is_constrained_through_its_chat_twin(
    hf_checkpoint: Path, ert_dir: Path
) -> None:
    from langchain_setraf import TransformersLLM

    llm = TransformersLLM(model=str(hf_checkpoint), quantization="fp32", temperature=0,
                          max_tokens=32)  # fmt: skip
    summary = summarize(load_survey(ert_dir / "setraf_readme_example.dat"), language="en")
    try:
        result = interpretation_chain(llm, "en").invoke(summary)
    finally:
        llm.release()
    schema_model(spec_of(summary)).model_validate_json(result.raw_text)
    assert result.choices is not None and result.choices.source == "constrained"
    assert not any(_trivial(w) for w in result.warnings), result.warnings
