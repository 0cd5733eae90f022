"""LCEL chains that interpret ERT surveys with any LangChain model.

Each chain accepts any ``BaseLanguageModel``: an LLM or a chat model, from this package
or any other. For the interpretation the model fills a form built per survey (see
:mod:`langchain_setraf.ert.interpretation`): it chooses each unit's material among that
unit's candidates, and the package writes the prose, with every figure taken from the
deterministic summary. The other chains ask for prose; every number a model writes is
checked.

Example:
    >>> from langchain_core.language_models import FakeListLLM
    >>> from langchain_setraf.ert import interpretation_chain
    >>> llm = FakeListLLM(responses=['{"U1": {"material": "alluvium / sand (general)", '
    ...                               '"confidence": "medium"}}'])
    >>> result = interpretation_chain(llm, language="en").invoke("examples/two_layer_wenner.dat")
    >>> result.units[0].material, result.units[0].confidence
    ('alluvium / sand (general)', 'medium')
    >>> result.geology.split(". ")[1]
    'U1, 1.04–4.15 m: 51.2–83.1 Ω·m (p10–p90), median 57.6 Ω·m'
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableGenerator, RunnableLambda
from pydantic import BaseModel, Field

from langchain_setraf.async_iter import aiter_in_thread
from langchain_setraf.ert import prompts
from langchain_setraf.ert.classify import setraf_water_class
from langchain_setraf.ert.grounding import check_numbers
from langchain_setraf.ert.i18n import TEXTS, check_language
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.interpretation import (
    Choices,
    InterpretationSpec,
    coerce_choices,
    filled_fraction,
    fmt,
    json_schema,
    parse_answer,
    render,
    schema_model,
    spec_of,
    token_budget,
    useful_text,
)
from langchain_setraf.ert.notes import NotePassage, as_passages, notes_context, quoted_texts
from langchain_setraf.ert.readers import load_survey
from langchain_setraf.ert.summary import SurveySummary, summarize
from langchain_setraf.ert.survey import Survey

__all__ = [
    "Interpretation",
    "LegendResult",
    "UnitReport",
    "as_summary",
    "constrained_stream",
    "ert_chat_chain",
    "graph_explanation_chain",
    "interpretation_chain",
    "legend_chain",
    "model_step",
    "parse_sections",
]

SurveyInput = str | os.PathLike[str] | Survey | SurveySummary


class UnitReport(BaseModel):
    """A unit of the section: figures from the summary, words chosen by the model."""

    name: str
    top_m: float
    bottom_m: float
    rho_p10: float
    rho_median: float
    rho_p90: float
    candidates: list[str]
    setraf_class: str
    material: str = ""
    alternative: str = ""
    confidence: str = ""
    reason: str = ""


Status = Literal["preparing", "decoding", "rendering", "done"]


class Interpretation(BaseModel):
    """A grounded interpretation of one survey (or, while streaming, a snapshot of one).

    ``geology``, ``recommendations`` and ``image_prompt`` are written by the package from
    :attr:`choices` (the model's filled form) and the summary's figures; ``model_notes``
    holds the model's own words that passed the checks. While the chain streams, each
    snapshot has ``status``/``progress``/``message`` and the answer so far in ``raw_text``;
    the last one (``status == "done"``) is the result. ``a + b`` is ``b`` (the newer
    snapshot), which is how LangChain aggregates a stream into ``invoke``'s result.
    """

    language: str
    geology: str = ""
    recommendations: list[str] = Field(default_factory=list)
    image_prompt: str = ""
    units: list[UnitReport] = Field(default_factory=list)
    choices: Choices | None = None
    model_notes: str = ""
    notes_used: list[NotePassage] = Field(
        default_factory=list,
        description="the site-notes passages the model was given (the report quotes them)",
    )
    caveats: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(
        default_factory=list,
        description="fields the model did not fill, claims the data do not support, and "
        "free text that was dropped (with the reason)",
    )
    facts: dict[str, Any] = Field(default_factory=dict)
    raw_text: str = ""
    status: Status = "done"
    progress: float = 1.0
    message: str = ""

    def __add__(self, other: Interpretation) -> Interpretation:
        return other


class LegendResult(BaseModel):
    """SETRAF's legend and explanation, with the deterministic water classes."""

    legend: str
    explanation: str
    classes: list[str]
    warnings: list[str] = Field(default_factory=list)


# -- helpers ------------------------------------------------------------------------------------
def as_summary(value: SurveyInput, language: str = "en") -> SurveySummary:
    """Load and summarise whatever the chain was given (path, Survey or summary)."""
    if isinstance(value, SurveySummary):
        return value
    survey = value if isinstance(value, Survey) else load_survey(value)
    return summarize(survey, language=language)


def model_step(llm: BaseLanguageModel[Any], prefill: str = "") -> Runnable[list[BaseMessage], str]:
    """Messages → text, for chat models and LLMs alike.

    A chat model gets the messages; an LLM with a ``format_chat`` method (``GGUFLLM``)
    gets them rendered with its model's chat template; any other LLM gets their contents
    joined by blank lines.

    Args:
        llm: Any LangChain chat model or LLM.
        prefill: For LLMs with a chat template: the start of the assistant's answer (e.g.
            the first heading), prepended to the returned text.

    Returns:
        A runnable from a list of messages to the answer's text.
    """
    if isinstance(llm, BaseChatModel):
        return llm | StrOutputParser()
    format_chat: Callable[[Sequence[BaseMessage]], str] | None = getattr(llm, "format_chat", None)
    if format_chat is not None:
        fmt = format_chat

        def render(messages: list[BaseMessage]) -> str:
            return fmt(messages) + prefill

        def prepend(text: str) -> str:
            return prefill + text

        return RunnableLambda(render) | llm | StrOutputParser() | RunnableLambda(prepend)

    def plain(messages: list[BaseMessage]) -> str:
        return "\n\n".join(str(m.content) for m in messages)

    return RunnableLambda(plain) | llm | StrOutputParser()


def _lang(language: str) -> str:
    return check_language(language)


_HEADING_WORDS = {
    "geology": r"g[ée]ologie|geology",
    "actions": r"actions?|recommand?ations?|recommendations?",
    "image": r"image(?:\s*/\s*prompt(?:\s*ia)?|\s+prompt)?|prompt\s*ia",
    "legend": r"l[ée]gende|legend",
    "interpretation": r"interpr[ée]tation",
}


def parse_sections(text: str, keys: Sequence[str]) -> dict[str, str]:
    """Split model output into sections by heading, tolerant of numbering and Markdown.

    A heading is a line that *starts* with an optional number (``1.``, ``2)``), optional
    ``#``/``*`` decoration and one of the known words, then ``:`` or the end of the line.
    Numbers inside sentences (``"1.5 m"``) never start a section.
    """
    alternatives = "|".join(f"(?P<{k}>{_HEADING_WORDS[k]})" for k in keys)
    heading = re.compile(
        rf"^[ \t]*(?:#+[ \t]*)?(?:\d[ \t]*[.)][ \t]*)?(?:[*_]{{1,2}})?[ \t]*(?:{alternatives})"
        rf"[ \t]*(?:[*_]{{1,2}})?[ \t]*(?::|-|–|$)[ \t]*(?:[*_]{{1,2}})?",
        re.I | re.M,
    )
    found: dict[str, str] = {}
    matches = list(heading.finditer(text))
    for i, m in enumerate(matches):
        key = next(k for k in keys if m.group(k))
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[m.end() : end].strip()
        if key not in found:
            found[key] = body
    return found


def _units(summary: SurveySummary, choices: Choices | None = None) -> list[UnitReport]:
    chosen = {c.name: c for c in choices.units} if choices is not None else {}
    return [
        UnitReport(
            name=u.name,
            top_m=u.top,
            bottom_m=u.bottom,
            rho_p10=u.stats.p10,
            rho_median=u.stats.median,
            rho_p90=u.stats.p90,
            candidates=[c.material for c in u.candidates],
            setraf_class=u.setraf_class,
            **(
                chosen[u.name].model_dump(
                    include={"material", "alternative", "confidence", "reason"}
                )
                if u.name in chosen
                else {}
            ),
        )
        for u in summary.units
    ]


# -- decoding the form ----------------------------------------------------------------------------
TextStream = Iterator[str]


def _chunk_text(chunk: Any) -> str:
    if isinstance(chunk, str):
        return chunk
    content = getattr(chunk, "content", "")
    return content if isinstance(content, str) else ""


def constrained_stream(
    llm: BaseLanguageModel[Any], messages: list[BaseMessage], schema: dict[str, Any], budget: int
) -> TextStream | None:
    """Stream the answer decoded under ``schema`` when ``llm`` is a local model, else ``None``.

    ``GGUFLLM`` gets the schema as its ``json_schema`` call option (a GBNF grammar
    in-process, the server's JSON-schema field on the managed server); the other LLMs of
    this package (``TransformersLLM``, ``GGUFLLM`` attached by URL: the server renders its
    own template) go through their chat twin (``as_chat_model()``, which shares their
    loaded weights and settings); ``ChatGGUF`` and ``ChatTransformers`` get the schema as
    ``response_format`` (what their ``with_structured_output`` binds). The token limit is
    raised to ``budget`` when lower, so the JSON is never cut off.
    """
    from langchain_setraf.chat_base import LocalChatModel
    from langchain_setraf.llm_base import CachedLLM
    from langchain_setraf.llms import GGUFLLM

    if isinstance(llm, GGUFLLM) and llm.server_url is None:
        prompt = llm.format_chat(messages)
        limit = max(budget, llm.max_tokens)
        stream = llm.stream(prompt, json_schema=schema, max_tokens=limit)
        return (_chunk_text(c) for c in stream)
    model: BaseLanguageModel[Any] = llm
    if isinstance(llm, CachedLLM) and llm.chat_model_class is not None:
        model = llm.as_chat_model()
    if isinstance(model, LocalChatModel):
        limit = max(budget, model.max_tokens)
        bound = model.bind(response_format={"type": "json_schema", "schema": schema})
        return (_chunk_text(c) for c in bound.stream(messages, max_tokens=limit))
    return None


def _form_rules(lang: str) -> str:
    """The form's rules that are the same for every survey (they open the request, so two
    interpretations share them as a prompt prefix: see :func:`_messages`)."""
    form = prompts.FORM[lang]
    return "\n".join((form["unit_rule"], form["water_rule"], form["anomaly_rule"], form["summary"]))


def _form_text(summary: SurveySummary, spec: InterpretationSpec, lang: str, example: bool) -> str:
    form = prompts.FORM[lang]
    f = functools.partial(fmt, language="en")
    lines = []
    for u, us in zip(summary.units, spec.units, strict=True):
        lines.append(
            form["unit"].format(
                name=u.name,
                top=f(u.top),
                bottom=f(u.bottom),
                p10=f(u.stats.p10),
                p90=f(u.stats.p90),
                median=f(u.stats.median),
                choices=" | ".join(us.candidates),
            )
        )
    if spec.boundaries:
        labels = [
            f"{label} ({tr(lang, 'summary.increase' if b.factor > 1 else 'summary.decrease')})"
            for label, b in zip(spec.boundaries, summary.boundaries, strict=True)
        ]
        lines.append(form["water"].format(choices=" | ".join([*labels, "none"])))
    for a in spec.anomalies:
        kind = tr(lang, f"kind.{a.kind}")
        lines.append(form["anomaly"].format(name=a.name, kind=kind, choices=" | ".join(a.causes)))
    if example:
        lines.append(form["example"].format(example=json.dumps(_example(spec))))
    return "\n".join(lines)


def _example(spec: InterpretationSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for u in spec.units:
        out[u.name] = {
            "material": u.candidates[0],
            "alternative": u.candidates[-1],
            "confidence": "low|medium|high",
            "reason": "...",
        }
    if spec.boundaries:
        out["water_table"] = {"supported": False, "boundary": "none"}
    for a in spec.anomalies:
        out[a.name] = {"cause": a.causes[0], "explanation": "..."}
    out["summary"] = "..."
    return out


#: Summary lines that say what the values are and how deep they reach: the same words for
#: every survey of a kind (every pseudo-section, every inverted model) up to the depth.
_KIND_LINES = ("summary.values", "summary.doi")


def _facts(summary: SurveySummary, lang: str) -> str:
    """The summary's facts for the form, kind lines first.

    The units are left out (the form describes each one once, with its choices). The
    lines that describe the kind of values and the depth-of-investigation rule come before
    the survey's own figures: they are the same for two surveys of a kind, so the prompt
    prefix two interpretations share (and the model's KV state for it) runs through them.
    """
    lines = [
        ln
        for ln in summary.to_text(lang).splitlines()
        if not ln.startswith(("- U", tr(lang, "summary.units")))
    ]
    starts = tuple(TEXTS[lang][key].split("{", 1)[0] for key in _KIND_LINES)
    kind = [ln for ln in lines if ln.startswith(starts)]
    return "\n".join([*kind, *(ln for ln in lines if ln not in kind)])


def _messages(
    summary: SurveySummary, spec: InterpretationSpec, lang: str, context: str, example: bool
) -> list[BaseMessage]:
    file_text = tr(
        lang,
        "prompt.file_text",
        title=summary.survey.title,
        notes=context or tr(lang, "prompt.no_notes"),
    )
    # fixed instructions first (system message, then the form's rules), the survey last:
    # a second interpretation re-uses the first one's KV state for that prefix
    human = prompts.STRUCTURED[lang].format(
        rules=_form_rules(lang),
        facts=_facts(summary, lang),
        data=prompts.as_data(file_text),
        form=_form_text(summary, spec, lang, example),
    )
    return [SystemMessage(prompts.SYSTEM[lang]), HumanMessage(human)]


def _structured_output(
    llm: BaseLanguageModel[Any], model_cls: type[BaseModel]
) -> Runnable[Any, Any] | None:
    if not isinstance(llm, BaseChatModel):
        return None
    try:
        return llm.with_structured_output(model_cls)
    except NotImplementedError:
        return None


def _prose_notes(text: str) -> str:
    """A text model that wrote sections instead of JSON: keep its prose for the checks."""
    found = parse_sections(text, ("geology", "actions", "image"))
    if found:
        return " ".join(v for v in found.values() if v)
    return text


# -- the chain ------------------------------------------------------------------------------------
def interpretation_chain(
    llm: BaseLanguageModel[Any], language: str = "fr"
) -> Runnable[Any, Interpretation]:
    """Survey → :class:`Interpretation`: the model fills a form, the package writes the prose.

    The input is a path, a :class:`Survey`, a :class:`SurveySummary`, or a dict
    ``{"survey": ..., "context": "site notes", "notes": [NotePassage, ...]}`` (``notes``:
    passages of the user's notes, :func:`~langchain_setraf.ert.notes.retrieve_for_summary`;
    the model reads them with their sources, the result lists them in ``notes_used``, and
    a figure of the model's own text that the survey does not support is kept only when
    one of them states it). The form (:mod:`~langchain_setraf.ert.
    interpretation`) is built per survey: each unit chooses from its own candidates.
    Local models decode it under the form's JSON schema, so it always parses; other chat
    models use ``with_structured_output``; anything else (or a failure there) is read by a
    tolerant parser, and every field it cannot read gets the trivial value with a warning.

    ``invoke`` returns the result. ``stream`` yields :class:`Interpretation` snapshots
    while the form is decoded (``status``, ``progress`` in 0–1, ``message``, the answer so
    far in ``raw_text``); the last one is the result.

    Args:
        llm: Any LangChain LLM or chat model.
        language: ``"fr"`` (SETRAF's default) or ``"en"``.
    """
    lang = _lang(language)

    def transform(values: Iterator[Any]) -> Iterator[Interpretation]:
        for value in values:
            yield from _interpret(llm, lang, value)

    async def atransform(values: AsyncIterator[Any]) -> AsyncIterator[Interpretation]:
        items = [v async for v in values]
        async for snap in aiter_in_thread(lambda: transform(iter(items))):
            yield snap

    return RunnableGenerator(transform, atransform).with_config(run_name="ert_interpretation")


def _interpret(llm: BaseLanguageModel[Any], lang: str, value: Any) -> Iterator[Interpretation]:
    if isinstance(value, dict):
        summary = as_summary(value["survey"], lang)
        context = str(value.get("context") or "")
        passages = as_passages(value.get("notes"))
    else:
        summary, context, passages = as_summary(value, lang), "", []
    if passages:
        context = "\n\n".join(x for x in (context, notes_context(passages, lang)) if x)
    quoted = quoted_texts(passages)
    spec = spec_of(summary)
    base: dict[str, Any] = {
        "language": lang,
        "units": _units(summary),
        "caveats": summary.caveats,
        "facts": summary.facts(),
        "notes_used": passages,
    }
    yield Interpretation(
        **base, status="preparing", progress=0.0, message=tr(lang, "status.form_built")
    )
    warnings: list[str] = []
    schema = json_schema(spec)
    messages = _messages(summary, spec, lang, context, example=False)
    raw = ""
    source = "constrained"
    stream = constrained_stream(llm, messages, schema, token_budget(spec))
    if stream is None:
        structured = _structured_output(llm, schema_model(spec))
        if structured is not None:
            try:
                out = structured.invoke(messages)
                data = out.model_dump() if isinstance(out, BaseModel) else dict(out)
                raw, source = json.dumps(data, ensure_ascii=False), "structured_output"
            except Exception as exc:  # a provider's parsing or validation failure
                warnings.append(
                    tr(lang, "warn.structured_failed", error=f"{type(exc).__name__}: {exc}")
                )
        if not raw:
            messages = _messages(summary, spec, lang, context, example=True)
            stream = model_step(llm).stream(messages)
            source = "parsed"
    if stream is not None:
        parts: list[str] = []
        for chunk in stream:
            if not chunk:
                continue
            parts.append(chunk)
            raw = "".join(parts)
            done = filled_fraction(spec, raw) if source != "parsed" else 0.0
            yield Interpretation(
                **base,
                status="decoding",
                progress=0.05 + 0.9 * done,
                message=tr(lang, "status.decoding", percent=int(done * 100)),
                raw_text=raw,
            )
    if not raw.strip():
        raise ValueError(
            f"{type(llm).__name__} generated no text for the interpretation form "
            f"({source} decoding); nothing to interpret"
        )
    data = parse_answer(raw)
    if source != "parsed" and not data:
        warnings.append(tr(lang, "warn.no_parse"))
    # without site notes, resistivity alone cannot make an assignment certain
    cap = "high" if context.strip() else "medium"
    choices, coerce_warnings = coerce_choices(
        spec, data, source=source, max_confidence=cap, language=lang
    )
    warnings += coerce_warnings
    yield Interpretation(
        **base,
        status="rendering",
        progress=0.97,
        message=tr(lang, "status.rendering"),
        raw_text=raw,
    )
    rendered = render(summary, choices, lang, prompt=str(messages[-1].content), quoted=quoted)
    notes = rendered.model_notes
    warnings += rendered.warnings
    if not data and raw.strip():
        prose, prose_warnings = useful_text(
            _prose_notes(raw), summary, lang, str(messages[-1].content), quoted=quoted
        )
        notes = " ".join(x for x in (notes, prose) if x)
        warnings += prose_warnings
    # the prose is built from the summary: any number it states must be supported
    written = " ".join([rendered.geology, *rendered.recommendations])
    warnings += [
        tr(lang, "warn.internal", warning=w) for w in check_numbers(written, summary, lang)
    ]
    yield Interpretation(
        **{**base, "units": _units(summary, choices)},
        geology=rendered.geology,
        recommendations=rendered.recommendations,
        image_prompt=rendered.image_prompt,
        choices=choices,
        model_notes=notes,
        warnings=warnings,
        raw_text=raw,
        status="done",
        progress=1.0,
        message=tr(lang, "status.done"),
    )


def legend_chain(llm: BaseLanguageModel[Any], language: str = "fr") -> Runnable[Any, LegendResult]:
    """``{"survey" | "values": ..., "section_type": ...}`` → :class:`LegendResult`.

    The water classes are computed from the data (SETRAF's seawater ≤ 1, saline 1–10,
    fresh 10–100, pure > 100 Ω·m); the model writes the legend text and explanation, and
    only its answer (never the prompt) is parsed.
    """
    lang = _lang(language)
    model = model_step(llm)

    def run(value: dict[str, Any]) -> LegendResult:
        if "values" in value:
            values = [float(v) for v in value["values"] if float(v) > 0]
        else:
            values = [c.rho for c in as_summary(value["survey"], lang).survey.cells]
        if not values:
            raise ValueError("legend_chain needs at least one positive resistivity")
        rho_min, rho_max = min(values), max(values)
        groups: dict[str, list[float]] = {}
        for v in values:
            groups.setdefault(setraf_water_class(v, lang), []).append(v)
        classes = [
            tr(lang, "legend.class", name=name, lo=f"{min(vs):.3g}", hi=f"{max(vs):.3g}", n=len(vs))
            for name, vs in groups.items()
        ]
        msg = prompts.LEGEND[lang].format(
            rho_min=f"{rho_min:.3g}",
            rho_max=f"{rho_max:.3g}",
            section_type=value.get("section_type", "general"),
            classes="\n".join(classes),
        )
        raw = model.invoke([SystemMessage(prompts.SYSTEM[lang]), HumanMessage(msg)])
        found = parse_sections(raw, ("legend", "interpretation"))
        warnings = [] if found else [tr(lang, "warn.no_headings")]
        return LegendResult(
            legend=found.get("legend", "").strip() or "\n".join(classes),
            explanation=found.get("interpretation", raw if not found else "").strip(),
            classes=classes,
            warnings=warnings,
        )

    return RunnableLambda(run).with_config(run_name="ert_legend")


def graph_explanation_chain(
    llm: BaseLanguageModel[Any], language: str = "fr"
) -> Runnable[dict[str, Any], str]:
    """``{"graph_type", "data_stats", "context"}`` → explanation text (SETRAF graph types)."""
    lang = _lang(language)
    model = model_step(llm)

    def build(value: dict[str, Any]) -> list[BaseMessage]:
        gtype = value.get("graph_type", "default")
        if gtype not in prompts.GRAPH_TYPES:
            raise ValueError(
                f"unknown graph_type {gtype!r}; expected one of {', '.join(prompts.GRAPH_TYPES)}"
            )
        lengths = prompts.GRAPH_LENGTH[lang]
        ctx = value.get("context") or ""
        msg = prompts.GRAPH[lang].format(
            graph=prompts.GRAPH_NAMES[lang][gtype],
            data=prompts.as_data(str(value.get("data_stats", ""))),
            context=prompts.as_data(ctx) if ctx else "",
            length=lengths.get(gtype, lengths["default"]),
        )
        return [SystemMessage(prompts.SYSTEM[lang]), HumanMessage(msg)]

    return (RunnableLambda(build) | model).with_config(run_name="ert_graph_explanation")


def ert_chat_chain(
    llm: BaseLanguageModel[Any], language: str = "fr"
) -> Runnable[dict[str, Any], str]:
    """``{"survey": path|Survey|SurveySummary, "question": str}`` → answer text."""
    lang = _lang(language)
    model = model_step(llm)

    def build(value: dict[str, Any]) -> list[BaseMessage]:
        summary = as_summary(value["survey"], lang)
        msg = prompts.CHAT[lang].format(
            facts=summary.to_text(lang), question=prompts.as_data(str(value["question"]))
        )
        return [SystemMessage(prompts.SYSTEM[lang]), HumanMessage(msg)]

    return (RunnableLambda(build) | model).with_config(run_name="ert_chat")
