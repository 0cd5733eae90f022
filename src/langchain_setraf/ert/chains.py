"""LCEL chains that interpret ERT surveys with any LangChain model.

Each chain accepts any ``BaseLanguageModel``: an LLM or a chat model, from this package
or any other. Chat models receive messages; LLMs receive the prompt rendered with their
own chat template when they expose ``format_chat`` (as :class:`~langchain_setraf.GGUFLLM`
does), else as plain text. The model writes prose only; units, ranges and candidates
come from the deterministic summary, and every number the model writes is checked.

Example:
    >>> from langchain_core.language_models import FakeListLLM
    >>> from langchain_setraf.ert import interpretation_chain
    >>> llm = FakeListLLM(responses=["GEOLOGY: Clay over rock.\\nACTIONS:\\n- Drill at 30 m."
    ...                               "\\nIMAGE PROMPT: A section."])
    >>> result = interpretation_chain(llm, language="en").invoke("examples/two_layer_wenner.dat")
    >>> result.geology
    'Clay over rock.'
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, Field

from langchain_setraf.ert import prompts
from langchain_setraf.ert.classify import setraf_water_class
from langchain_setraf.ert.grounding import check_numbers
from langchain_setraf.ert.io import load_survey
from langchain_setraf.ert.summary import SurveySummary, summarize
from langchain_setraf.ert.survey import Survey

__all__ = [
    "Interpretation",
    "LegendResult",
    "UnitReport",
    "as_summary",
    "ert_chat_chain",
    "graph_explanation_chain",
    "interpretation_chain",
    "legend_chain",
    "parse_sections",
]

SurveyInput = str | os.PathLike[str] | Survey | SurveySummary


class UnitReport(BaseModel):
    """A unit of the section (deterministic, from the summary)."""

    name: str
    top_m: float
    bottom_m: float
    rho_p10: float
    rho_median: float
    rho_p90: float
    candidates: list[str]
    setraf_class: str


class _ModelSections(BaseModel):
    """What the model is asked to write (the schema for structured output)."""

    geology: str = Field(description="2-3 sentences on the units and what they could be")
    recommendations: list[str] = Field(description="2-3 concrete recommendations")
    image_prompt: str = Field(description="one sentence describing the cross-section")


class Interpretation(BaseModel):
    """A grounded interpretation of one survey."""

    language: str
    geology: str
    recommendations: list[str]
    image_prompt: str
    units: list[UnitReport]
    caveats: list[str]
    warnings: list[str] = Field(
        default_factory=list,
        description="numbers the model wrote that the survey does not support, and "
        "sections the model did not write",
    )
    facts: dict[str, Any] = Field(default_factory=dict)
    raw_text: str = ""


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


def _model_step(llm: BaseLanguageModel[Any], prefill: str = "") -> Runnable[list[BaseMessage], str]:
    """Messages → text, for chat models and LLMs alike.

    For completion LLMs with a chat template, ``prefill`` starts the assistant's answer
    (e.g. the first heading) and is prepended to the returned text.
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
    if language not in ("fr", "en"):
        raise ValueError(f"language must be 'fr' or 'en', not {language!r}")
    return language


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


def _norm(line: str) -> str:
    line = re.sub(r"^\s*(?:[-*•]|\d+\s*[.)])\s*", "", line)
    return re.sub(r"\W+", " ", line).strip().lower()


def _drop_echo(answer: str, prompt: Any) -> tuple[str, int]:
    """Remove answer lines copied from the prompt (small models echo instructions)."""
    prompt_text = str(prompt)
    seen = {_norm(x) for x in prompt_text.splitlines() if len(_norm(x)) > 12}
    bodies = set()
    for x in prompt_text.splitlines():  # heading lines: compare what follows the heading
        _, sep, rest = x.partition(":")
        if sep and len(_norm(rest)) > 12:
            bodies.add(_norm(rest))
    kept, dropped = [], 0
    for line in answer.splitlines():
        head, sep, rest = line.partition(":")
        n = _norm(line)
        if n and (n in seen or n in bodies):
            dropped += 1
            continue
        if sep and _norm(rest) and _norm(rest) in bodies | seen:
            kept.append(head + sep)
            dropped += 1
            continue
        kept.append(line)
    return "\n".join(kept), dropped


def _bullets(text: str) -> list[str]:
    items = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+\s*[.)])\s*", "", line).strip()
        if line:
            items.append(line)
    return items


def _default_recommendations(summary: SurveySummary, language: str) -> list[str]:
    deepest = summary.units[-1]
    if language == "fr":
        recs = [
            f"Forage ou pénétromètre jusqu'à {deepest.bottom:g} m pour caler les unités "
            "(la résistivité seule ne distingue pas argile et eau salée).",
            "Mesures de polarisation provoquée (IP) pour séparer argile et salinité.",
        ]
        if summary.survey.depth_kind == "pseudo":
            recs.append("Inverser les données avant de lire des profondeurs.")
    else:
        recs = [
            f"Drill or direct-push to {deepest.bottom:g} m to calibrate the units "
            "(resistivity alone does not separate clay from saline water).",
            "Add induced polarisation (IP) to tell clay from salinity.",
        ]
        if summary.survey.depth_kind == "pseudo":
            recs.append("Invert the data before reading depths.")
    return recs


def _units(summary: SurveySummary) -> list[UnitReport]:
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
        )
        for u in summary.units
    ]


def _supports_structured_output(llm: BaseLanguageModel[Any]) -> Runnable[Any, Any] | None:
    if not isinstance(llm, BaseChatModel):
        return None
    try:
        return llm.with_structured_output(_ModelSections)
    except NotImplementedError:
        return None


# -- chains ---------------------------------------------------------------------------------------
def interpretation_chain(
    llm: BaseLanguageModel[Any], language: str = "fr"
) -> Runnable[Any, Interpretation]:
    """Survey → :class:`Interpretation` (geology, actions, image prompt, units, caveats).

    The input is a path, a :class:`Survey`, a :class:`SurveySummary`, or a dict
    ``{"survey": ..., "context": "site notes"}``. Structured output is used when the model
    supports it; otherwise a tolerant section parser reads the text.

    Args:
        llm: Any LangChain LLM or chat model.
        language: ``"fr"`` (SETRAF's default) or ``"en"``.
    """
    lang = _lang(language)
    structured = _supports_structured_output(llm)
    text_model = _model_step(llm, prefill=f"{prompts.HEADINGS[lang][0]}:")

    def prepare(value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            summary = as_summary(value["survey"], lang)
            context = str(value.get("context") or "")
        else:
            summary, context = as_summary(value, lang), ""
        file_text = f"title: {summary.survey.title}\n" + (f"site notes: {context}" if context
                                                           else "site notes: unknown")  # fmt: skip
        messages: list[BaseMessage] = [
            SystemMessage(prompts.SYSTEM[lang]),
            HumanMessage(
                prompts.INTERPRET[lang].format(
                    facts=summary.to_text(), data=prompts.as_data(file_text)
                )
            ),
        ]
        return {"summary": summary, "messages": messages}

    def run(inputs: dict[str, Any]) -> Interpretation:
        summary: SurveySummary = inputs["summary"]
        warnings: list[str] = []
        if structured is not None:
            out = structured.invoke(inputs["messages"])
            sections = out if isinstance(out, _ModelSections) else _ModelSections(**out)
            raw = sections.model_dump_json()
            geology, recs, image = sections.geology, sections.recommendations, sections.image_prompt
        else:
            raw = text_model.invoke(inputs["messages"])
            text, echoed = _drop_echo(raw, inputs["messages"][-1].content)
            if echoed:
                warnings.append(
                    f"the model repeated {echoed} line(s) of the instructions; they were removed"
                )
            found = parse_sections(text, ("geology", "actions", "image"))
            geology = found.get("geology") or ""
            recs = _bullets(found.get("actions", ""))
            image = found.get("image", "")
            if not found:
                geology = text.strip()
                warnings.append(
                    "the model wrote no section headings; its whole text is kept as geology"
                )
        if not recs:
            recs = _default_recommendations(summary, lang)
            warnings.append("the model gave no recommendations; deterministic ones were used")
        if not geology.strip():
            warnings.append("the model wrote no geology section")
        warnings += check_numbers("\n".join([geology, *recs, image]), summary)
        return Interpretation(
            language=lang,
            geology=geology.strip(),
            recommendations=recs,
            image_prompt=image.strip(),
            units=_units(summary),
            caveats=summary.caveats,
            warnings=warnings,
            facts=summary.facts(),
            raw_text=raw,
        )

    return (RunnableLambda(prepare) | RunnableLambda(run)).with_config(
        run_name="ert_interpretation"
    )


def legend_chain(llm: BaseLanguageModel[Any], language: str = "fr") -> Runnable[Any, LegendResult]:
    """``{"survey" | "values": ..., "section_type": ...}`` → :class:`LegendResult`.

    The water classes are computed from the data (SETRAF's seawater ≤ 1, saline 1–10,
    fresh 10–100, pure > 100 Ω·m); the model writes the legend text and explanation, and
    only its answer (never the prompt) is parsed.
    """
    lang = _lang(language)
    model = _model_step(llm)

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
            f"{name}: {min(vs):.3g}–{max(vs):.3g} ohm·m ({len(vs)} values)"
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
        warnings = [] if found else ["the model wrote no LEGEND/INTERPRETATION headings"]
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
    model = _model_step(llm)

    def build(value: dict[str, Any]) -> list[BaseMessage]:
        gtype = value.get("graph_type", "default")
        if gtype not in prompts.GRAPH_TYPES:
            raise ValueError(
                f"unknown graph_type {gtype!r}; expected one of {', '.join(prompts.GRAPH_TYPES)}"
            )
        lengths = prompts.GRAPH_LENGTH[lang]
        ctx = value.get("context") or ""
        msg = prompts.GRAPH[lang].format(
            graph=prompts.GRAPH_TYPES[gtype],
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
    model = _model_step(llm)

    def build(value: dict[str, Any]) -> list[BaseMessage]:
        summary = as_summary(value["survey"], lang)
        msg = prompts.CHAT[lang].format(
            facts=summary.to_text(), question=prompts.as_data(str(value["question"]))
        )
        return [SystemMessage(prompts.SYSTEM[lang]), HumanMessage(msg)]

    return (RunnableLambda(build) | model).with_config(run_name="ert_chat")
