"""SETRAF's own LLM functions, rebuilt on the chains (``../shared/docs/setraf-llm-contract.md``).

Drop-in for the SETRAF app: replace ``load_mistral_llm(...)`` with
``as_text_generation_pipeline(GGUFLLM())`` and keep calling the same functions. The
known defects are not copied: section parsers do not trip on ``"1.5 m"``, the legend
parser reads only the answer, timeouts really stop generation, and failures raise
instead of returning canned text.

Example:
    >>> from langchain_core.language_models import FakeListLLM
    >>> pipe = as_text_generation_pipeline(FakeListLLM(responses=["Bonjour"]))
    >>> pipe("[INST] Salut [/INST]", return_full_text=False)
    [{'generated_text': 'Bonjour'}]
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable

from langchain_setraf.ert import prompts
from langchain_setraf.ert.chains import (
    constrained_stream,
    graph_explanation_chain,
    legend_chain,
    model_step,
    parse_sections,
)
from langchain_setraf.ert.classify import candidate_materials, setraf_class
from langchain_setraf.ert.i18n import confidence_name
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.interpretation import (
    UNKNOWN_MATERIAL,
    Choices,
    InterpretationSpec,
    UnitSpec,
    coerce_choices,
    detect_language,
    filled_fraction,
    fmt,
    json_schema,
    material_class,
    material_name,
    parse_answer,
    token_budget,
)

__all__ = [
    "GenerationTimeoutError",
    "TextGenerationPipeline",
    "analyze_data_with_mistral",
    "as_text_generation_pipeline",
    "generate_dynamic_legend_and_explanation",
    "generate_graph_explanation_with_llm",
    "generate_text_with_streaming",
]

ProgressCallback = Callable[[str, float], None]

_SYNONYMS = {
    "max_new_tokens": ("max_new_tokens", "max_tokens", "num_predict"),
    "repetition_penalty": ("repetition_penalty", "repeat_penalty"),
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "top_k": ("top_k",),
}
_INST = re.compile(r"\[INST\](.*?)\[/INST\]", re.S)


class GenerationTimeoutError(TimeoutError):
    """Generation was stopped at the time limit. ``partial`` holds the text so far."""

    def __init__(self, seconds: float, partial: str) -> None:
        super().__init__(f"generation stopped after {seconds:g} s (time limit)")
        self.partial = partial


def _unwrap(llm: Any) -> BaseLanguageModel[Any]:
    if llm is None:
        raise ValueError(
            "no LLM given (SETRAF's loader returned None): load one, e.g. "
            "as_text_generation_pipeline(GGUFLLM())"
        )
    if isinstance(llm, TextGenerationPipeline):
        return llm.llm
    if isinstance(llm, BaseLanguageModel):
        return llm
    raise TypeError(
        f"expected a LangChain model or as_text_generation_pipeline(...), got {type(llm).__name__}"
    )


def _configured(llm: BaseLanguageModel[Any], **params: Any) -> BaseLanguageModel[Any]:
    """Copy of ``llm`` with HF-style generation settings mapped onto its own field names."""
    fields = type(llm).model_fields
    update = {}
    for hf_name, value in params.items():
        if value is None:
            continue
        for name in _SYNONYMS.get(hf_name, (hf_name,)):
            if name in fields:
                update[name] = value
                break
    return llm.model_copy(update=update) if update else llm


def _to_prompt(llm: BaseLanguageModel[Any], prompt: str) -> Any:
    """Raw ``[INST] … [/INST]`` prompts become the model's own chat format when it has one."""
    parts = _INST.findall(prompt)
    if not parts:
        return prompt
    messages = [HumanMessage(p.strip()) for p in parts]
    if isinstance(llm, BaseChatModel):
        return messages
    fmt = getattr(llm, "format_chat", None)
    return fmt(messages) if fmt is not None else prompt


def _stream_text(
    runnable: Runnable[Any, Any],
    prompt: Any,
    *,
    timeout: float | None,
    on_token: Callable[[str], None] | None = None,
) -> str:
    """Stream a model or chain to text; stop it (close the stream) at ``timeout`` seconds."""
    start = time.monotonic()
    parts: list[str] = []
    stream = iter(runnable.stream(prompt))
    try:
        for chunk in stream:
            text = chunk if isinstance(chunk, str) else str(getattr(chunk, "content", ""))
            parts.append(text)
            if on_token is not None and text:
                on_token(text)
            if timeout is not None and time.monotonic() - start > timeout:
                raise GenerationTimeoutError(timeout, "".join(parts))
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return "".join(parts)


class _Tokenizer:
    def __init__(self, llm: BaseLanguageModel[Any]) -> None:
        self._llm = llm

    @property
    def eos_token_id(self) -> int | None:
        """The model's end-of-sequence id (SETRAF passes it as ``pad_token_id``)."""
        eos = getattr(self._llm, "eos_token_id", None)
        return eos() if callable(eos) else None


class TextGenerationPipeline:
    """A callable with the transformers ``text-generation`` pipeline contract SETRAF uses.

    ``pipe(prompt, max_new_tokens=…, temperature=…, return_full_text=True, …)`` returns
    ``[{"generated_text": …}]``. HF keyword names are mapped onto the model's own
    (``max_new_tokens`` → ``max_tokens``, ``repetition_penalty`` → ``repeat_penalty``),
    ``do_sample=False`` means greedy, ``pad_token_id`` is accepted and ignored.
    """

    def __init__(self, llm: BaseLanguageModel[Any], timeout: float | None = None) -> None:
        self.llm = llm
        self.timeout = timeout
        self.tokenizer = _Tokenizer(llm)

    def __call__(
        self,
        prompt: str,
        *,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        num_return_sequences: int = 1,
        pad_token_id: int | None = None,
        return_full_text: bool = True,
        timeout: float | None = None,
        **unknown: Any,
    ) -> list[dict[str, str]]:
        if unknown:
            raise TypeError(f"unsupported text-generation argument(s): {sorted(unknown)}")
        if do_sample is False:
            temperature = 0.0
        model = _configured(
            self.llm,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
        )
        limit = timeout if timeout is not None else self.timeout
        out = []
        for _ in range(max(1, num_return_sequences)):
            text = _stream_text(model, _to_prompt(model, prompt), timeout=limit)
            out.append({"generated_text": (prompt + text) if return_full_text else text})
        return out


def as_text_generation_pipeline(
    llm: BaseLanguageModel[Any], timeout: float | None = None
) -> TextGenerationPipeline:
    """Wrap any LangChain model as SETRAF's ``text-generation`` callable."""
    return TextGenerationPipeline(llm, timeout=timeout)


def _progress(cb: ProgressCallback | None, message: str, fraction: float) -> None:
    if cb is not None:
        cb(message, fraction)


def analyze_data_with_mistral(
    llm: Any,
    geophysical_data: Mapping[str, Any],
    progress_callback: ProgressCallback | None = None,
    *,
    timeout: float = 45.0,
) -> tuple[str, str, str]:
    """SETRAF's interpretation call: ``(interpretation, recommendations, image_prompt)``.

    The three sections (GÉOLOGIE, ACTIONS, IMAGE / PROMPT IA) are written in French from a
    one-unit form the model fills (its material among the candidates of the observed
    ``rho_min``–``rho_max`` range, an alternative, a confidence, a reason and a summary);
    every figure comes from ``geophysical_data``. Local models decode the form under its
    JSON schema, with at least the tokens it needs (SETRAF's 128 are too few for JSON).
    The model's own words are appended to GÉOLOGIE only when they pass the checks.
    ``recommendations`` has one ``- `` line per action.

    Raises:
        ValueError: ``llm`` is ``None`` or ``geophysical_data`` lacks ``rho_mean``.
        GenerationTimeoutError: Generation passed ``timeout`` seconds (it is stopped).
    """
    model = _configured(
        _unwrap(llm), max_new_tokens=128, temperature=0.7, top_p=0.85, repetition_penalty=1.15
    )
    if "rho_mean" not in geophysical_data:
        raise ValueError("geophysical_data must contain 'rho_mean' (Ω·m)")
    _progress(progress_callback, tr("fr", "compat.progress.prepare"), 0.1)
    rho_mean = float(geophysical_data["rho_mean"])
    lo = float(geophysical_data.get("rho_min", rho_mean))
    hi = float(geophysical_data.get("rho_max", rho_mean))
    lo, hi = min(lo, hi), max(lo, hi)
    if lo <= 0:
        lo = min(v for v in (hi, rho_mean, 1.0) if v > 0)
    candidates = tuple(c.material for c in candidate_materials(lo, max(hi, lo)))
    spec = InterpretationSpec(units=(UnitSpec("U1", candidates or (UNKNOWN_MATERIAL,)),))
    pre = setraf_class(rho_mean, "fr")
    stats = "\n".join(f"{k}: {v}" for k, v in geophysical_data.items())
    form = prompts.FORM["fr"]
    msg = tr(
        "fr",
        "compat.request",
        data=prompts.as_data(stats),
        pre=pre,
        rule=form["unit_rule"],
        lo=fmt(lo),
        hi=fmt(hi),
        choices=" | ".join(spec.units[0].candidates),
        summary=form["summary"],
    )
    messages = [SystemMessage(prompts.SYSTEM["fr"]), HumanMessage(msg)]
    _progress(progress_callback, tr("fr", "compat.progress.generate"), 0.3)
    stream = constrained_stream(model, messages, json_schema(spec), token_budget(spec))
    if stream is None:
        example = json.dumps(
            {
                "U1": {
                    "material": spec.units[0].candidates[0],
                    "alternative": spec.units[0].candidates[-1],
                    "confidence": "low|medium|high",
                    "reason": "...",
                },
                "summary": "...",
            },
            ensure_ascii=False,
        )
        messages[-1] = HumanMessage(msg + "\n" + form["example"].format(example=example))
        stream = model_step(model).stream(messages)
    text = _consume(stream, spec, timeout, progress_callback)
    _progress(progress_callback, tr("fr", "compat.progress.parse"), 0.9)
    choices, _ = coerce_choices(spec, parse_answer(text), max_confidence="medium")
    result = _legacy_sections(geophysical_data, lo, hi, pre, choices, text, str(msg))
    _progress(progress_callback, tr("fr", "compat.progress.done"), 1.0)
    return result


def _consume(
    stream: Iterator[str],
    spec: InterpretationSpec,
    timeout: float | None,
    progress_callback: ProgressCallback | None,
) -> str:
    start = time.monotonic()
    parts: list[str] = []
    last = -1.0
    try:
        for chunk in stream:
            parts.append(chunk)
            if timeout is not None and time.monotonic() - start > timeout:
                raise GenerationTimeoutError(timeout, "".join(parts))
            done = filled_fraction(spec, "".join(parts))
            if done > last:
                last = done
                message = tr("fr", "compat.progress.generate")
                _progress(progress_callback, message, 0.3 + 0.55 * done)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return "".join(parts)


def _legacy_sections(
    data: Mapping[str, Any],
    lo: float,
    hi: float,
    pre: str,
    choices: Choices,
    raw: str,
    prompt: str,
) -> tuple[str, str, str]:
    unit = choices.units[0]
    mat, alt = material_name(unit.material, "fr"), material_name(unit.alternative, "fr")
    conf = confidence_name(unit.confidence, "fr")
    mean = float(data["rho_mean"])
    geology = tr(
        "fr",
        "compat.geology",
        lo=fmt(lo, "fr"),
        hi=fmt(hi, "fr"),
        mean=fmt(mean, "fr"),
        pre=pre,
        mat=mat,
        conf=conf,
        alt=alt,
    )
    notes = _legacy_notes(choices, raw, prompt)
    if notes:
        geology += " " + notes
    actions = [tr("fr", "compat.rec_drill", mat=mat, alt=alt), tr("fr", "compat.rec_ip")]
    if material_class(unit.material) == "rock" or hi >= 1000:
        actions.append(tr("fr", "compat.rec_refraction"))
    else:
        actions.append(tr("fr", "compat.rec_longer"))
    image = tr("fr", "compat.image", mat=mat, lo=fmt(lo, "fr"), hi=fmt(hi, "fr"))
    return geology, "\n".join(actions), image


_NUMBER = re.compile(r"\d")


def _legacy_notes(choices: Choices, raw: str, prompt: str) -> str:
    """The model's words worth keeping: French, not copied, no figures (none can be checked
    against a survey here), no names absent from the prompt."""
    text = " ".join(choices.free_text()) if choices.free_text() else ""
    if not text and not parse_answer(raw):
        found = parse_sections(raw, ("geology", "actions", "image"))
        text = found.get("geology", "") if found else raw
    kept = []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        if (
            len(sentence) >= 12
            and not _NUMBER.search(sentence)
            and sentence.lower() not in prompt.lower()
            and detect_language(sentence) in ("fr", None)
        ):
            kept.append(sentence)
    joined = " ".join(kept)
    return joined if detect_language(joined) == "fr" else ""


def generate_dynamic_legend_and_explanation(
    llm: Any, df: Any, rho_min: float, rho_max: float, section_type: str = "general"
) -> tuple[str, str]:
    """SETRAF's legend call: ``(legend, explanation)`` for a table with a ``data`` column."""
    model = _configured(_unwrap(llm), max_new_tokens=200, temperature=0.7)
    values: Iterable[Any] = df["data"]
    vals = [float(v) for v in values if rho_min <= float(v) <= rho_max]
    result = legend_chain(model, "fr").invoke({"values": vals, "section_type": section_type})
    return result.legend, result.explanation


def generate_graph_explanation_with_llm(
    llm: Any,
    graph_type: str,
    data_stats: str,
    context: str = "",
    use_streaming: bool = True,
    *,
    timeout: float | None = None,
    on_token: Callable[[str], None] | None = None,
) -> str:
    """SETRAF's graph explanation (600 new tokens, temperature 0.7, top_p 0.95)."""
    model = _configured(
        _unwrap(llm), max_new_tokens=600, temperature=0.7, top_p=0.95, repetition_penalty=1.1
    )
    chain = graph_explanation_chain(model, "fr")
    inputs = {"graph_type": graph_type, "data_stats": data_stats, "context": context}
    if not use_streaming:
        return chain.invoke(inputs)
    return _stream_text(chain, inputs, timeout=timeout, on_token=on_token)


def generate_text_with_streaming(
    llm: Any,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.7,
    *,
    on_token: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> str:
    """Stream a raw prompt (``[INST]`` prompts use the model's chat format), return the text."""
    model = _configured(_unwrap(llm), max_new_tokens=max_new_tokens, temperature=temperature)
    return _stream_text(model, _to_prompt(model, prompt), timeout=timeout, on_token=on_token)
