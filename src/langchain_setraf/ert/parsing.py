"""Reading a model's answer into the filled form (:class:`Choices`), tolerant of any text.

:func:`parse_answer` finds the first JSON object (complete or cut off) in what the model
wrote; :func:`coerce_choices` checks it against the survey's own lists and gives every
missing or off-list field its trivial value, with a warning in the requested language;
:func:`filled_fraction` measures a partial answer for progress bars.

Example:
    >>> from langchain_setraf.ert.form import InterpretationSpec, UnitSpec
    >>> spec = InterpretationSpec(units=(UnitSpec("U1", ("clay", "silt")),))
    >>> choices, warnings = coerce_choices(spec, parse_answer('{"U1": {"material": "Silt."}}'))
    >>> choices.units[0].material, choices.units[0].alternative
    ('silt', 'clay')
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.utils.json import parse_partial_json
from pydantic import BaseModel, Field

from langchain_setraf.ert.form import (
    CONFIDENCE,
    EXPLANATION_MAX,
    NONE,
    REASON_MAX,
    SUMMARY_MAX,
    InterpretationSpec,
    n_fields,
)
from langchain_setraf.ert.i18n import TEXTS, check_language, confidence_name, material_name
from langchain_setraf.ert.i18n import text as tr

__all__ = [
    "CUT",
    "AnomalyChoice",
    "Choices",
    "UnitChoice",
    "coerce_choices",
    "filled_fraction",
    "parse_answer",
]


class UnitChoice(BaseModel):
    """What the model chose for one unit."""

    name: str
    material: str
    alternative: str
    confidence: str
    reason: str = ""


class AnomalyChoice(BaseModel):
    """What the model chose for one lateral anomaly."""

    name: str
    cause: str
    explanation: str = ""


class Choices(BaseModel):
    """The filled form, checked against the survey's own lists."""

    units: list[UnitChoice]
    water_table: bool = False
    water_table_boundary: str = NONE
    anomalies: list[AnomalyChoice] = Field(default_factory=list)
    summary: str = ""
    source: str = Field(
        default="default",
        description="how the form was filled: constrained (decoded under the schema), "
        "structured_output, parsed (read from free text) or default (the trivial answer)",
    )

    def free_text(self) -> list[str]:
        """The model's own words: the summary, then each reason and explanation."""
        parts = [self.summary, *(u.reason for u in self.units)]
        parts += [a.explanation for a in self.anomalies]
        out = []
        for p in parts:  # each field is a sentence of its own
            p = p.strip()
            if p:
                out.append(p if p[-1] in ".!?" + CUT else p + ".")
        return out


def parse_answer(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (complete or cut off), or ``{}`` when there is none."""
    start = text.find("{")
    if start < 0:
        return {}
    body = text[start:]
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        try:
            value = json.JSONDecoder().raw_decode(body)[0]
        except json.JSONDecodeError:
            value = parse_partial_json(body)
    return value if isinstance(value, dict) else {}


def _pick(value: Any, allowed: tuple[str, ...]) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    for a in allowed:
        if v == a.lower():
            return a
    # "Clay." / "sandy clay" → clay; the longest matching name wins
    hits = [a for a in allowed if a.lower() in v or (len(v) > 3 and v in a.lower())]
    return max(hits, key=len) if hits else None


#: Ends a field's text that was cut at its length limit (the checks drop that sentence).
CUT = "…"


def _text(value: Any, limit: int) -> str:
    """A free-text field, at most ``limit`` characters; text that reaches the limit without
    ending a sentence was cut (by the schema's ``maxLength`` or here) and ends with
    :data:`CUT`."""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if len(text) >= limit and text[:limit].rstrip()[-1:] not in (".", "!", "?"):
        return text[: limit - 1].rstrip() + CUT
    return text[:limit]


def _field_name(field: str, language: str) -> str:
    """A form field (``U1.material``, ``summary``) as a warning names it in ``language``."""
    owner, _, key = field.rpartition(".")
    word = tr(language, f"field.{key}") if f"field.{key}" in TEXTS["en"] else key
    return f"{owner}.{word}" if owner else word


def coerce_choices(
    spec: InterpretationSpec,
    data: dict[str, Any],
    source: str = "parsed",
    *,
    max_confidence: str = "high",
    language: str = "en",
) -> tuple[Choices, list[str]]:
    """Read an answer into :class:`Choices`.

    Anything missing or off-list gets the trivial value (first candidate, the next one as
    alternative, low confidence) and a warning; a confidence above ``max_confidence`` is
    lowered, with a warning.

    Args:
        spec: The survey's form.
        data: The parsed answer (:func:`parse_answer`).
        source: How the form was filled (see :attr:`Choices.source`).
        max_confidence: The highest confidence accepted.
        language: ``"en"`` or ``"fr"``: the language of the warnings.

    Returns:
        The filled form and the warnings.

    Raises:
        ValueError: ``language`` is neither ``"fr"`` nor ``"en"``.
    """
    check_language(language)
    warnings: list[str] = []
    missing: list[str] = []
    units = []
    for u in spec.units:
        got = data.get(u.name) if isinstance(data.get(u.name), dict) else {}
        assert isinstance(got, dict)
        material = _pick(got.get("material"), u.candidates)
        if material is None:
            missing.append(f"{u.name}.material")
            if got.get("material"):
                warnings.append(
                    tr(language, "warn.not_candidate", unit=u.name, given=repr(got["material"]))
                )
            material = u.candidates[0]
        alternative = _pick(got.get("alternative"), u.candidates)
        if alternative is None:
            missing.append(f"{u.name}.alternative")
            others = [c for c in u.candidates if c != material]
            alternative = others[0] if others else material
        elif alternative == material and len(u.candidates) > 1:
            alternative = next(c for c in u.candidates if c != material)
            warnings.append(
                tr(
                    language,
                    "warn.own_alternative",
                    unit=u.name,
                    alternative=material_name(alternative, language),
                )
            )
        confidence = _pick(got.get("confidence"), CONFIDENCE)
        if confidence is None:
            missing.append(f"{u.name}.confidence")
            confidence = "low"
        elif CONFIDENCE.index(confidence) > CONFIDENCE.index(max_confidence):
            warnings.append(
                tr(
                    language,
                    "warn.confidence_lowered",
                    unit=u.name,
                    given=repr(confidence_name(confidence, language)),
                    cap=repr(confidence_name(max_confidence, language)),
                )
            )
            confidence = max_confidence
        reason = _text(got.get("reason"), REASON_MAX)
        if not reason:
            missing.append(f"{u.name}.reason")
        units.append(
            UnitChoice(
                name=u.name,
                material=material,
                alternative=alternative,
                confidence=confidence,
                reason=reason,
            )
        )
    water, boundary = False, NONE
    if spec.boundaries:
        wt = data.get("water_table")
        if isinstance(wt, dict) and isinstance(wt.get("supported"), bool):
            water = wt["supported"]
            boundary = _pick(wt.get("boundary"), (*spec.boundaries, NONE)) or NONE
        else:
            missing.append("water_table")
    anomalies = []
    for a in spec.anomalies:
        got = data.get(a.name) if isinstance(data.get(a.name), dict) else {}
        assert isinstance(got, dict)
        cause = _pick(got.get("cause"), a.causes)
        if cause is None:
            missing.append(f"{a.name}.cause")
            cause = a.causes[-1] if not got else a.causes[0]
        explanation = _text(got.get("explanation"), EXPLANATION_MAX)
        anomalies.append(AnomalyChoice(name=a.name, cause=cause, explanation=explanation))
    summary = _text(data.get("summary"), SUMMARY_MAX)
    if not summary:
        missing.append("summary")
    if missing:
        shown = ", ".join(_field_name(m, language) for m in missing)
        warnings.append(tr(language, "warn.missing", fields=shown))
        if len(missing) == n_fields(spec):
            source = "default"
    choices = Choices(
        units=units,
        water_table=water,
        water_table_boundary=boundary,
        anomalies=anomalies,
        summary=summary,
        source=source,
    )
    return choices, warnings


def filled_fraction(spec: InterpretationSpec, partial_text: str) -> float:
    """Share of the form's fields already complete in a partial answer (for progress bars)."""
    data = parse_answer(partial_text)
    total = n_fields(spec)
    done = 0
    for value in data.values():
        if isinstance(value, dict):
            done += sum(1 for v in value.values() if v not in (None, ""))
        elif isinstance(value, str) and value:
            done += 1
    return min(1.0, done / total) if total else 1.0
