"""The structure a model fills for one survey, and the French/English prose built from it.

A small model cannot be trusted with numbers or free prose, but it can always fill a form
whose every field is a closed choice. For each unit the summary found, the model chooses
its material from that unit's own candidate list (an enum built per survey), an
alternative from the same list, a confidence and one short reason; for the survey, whether
a water table is supported and at which boundary, a cause for each lateral anomaly, and a
short summary. :func:`schema_model` builds that form as a pydantic model (its JSON schema
constrains local decoders), :func:`coerce_choices` reads any answer into
:class:`Choices`, and :func:`render` writes the prose: every depth and resistivity comes
from the :class:`~langchain_setraf.ert.SurveySummary`, never from the model. The model's
free text is kept beside the prose only when it is useful (long enough, in the requested
language, not copied from the prompt, naming nothing the input does not, and every number
supported by the survey).

Example:
    >>> from langchain_setraf.ert import load_survey, summarize
    >>> s = summarize(load_survey("examples/two_layer_wenner.dat"))
    >>> spec = spec_of(s)
    >>> [u.name for u in spec.units]
    ['U1', 'U2', 'U3']
    >>> choices, warnings = coerce_choices(spec, {})  # nothing given: the trivial answer
    >>> choices.units[0].material == spec.units[0].candidates[0]
    True
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, cast

from langchain_core.utils.json import parse_partial_json
from pydantic import BaseModel, Field, create_model

from langchain_setraf.ert.grounding import check_numbers
from langchain_setraf.ert.summary import SurveySummary

__all__ = [
    "ANOMALY_CAUSES",
    "CONFIDENCE",
    "UNKNOWN_MATERIAL",
    "AnomalyChoice",
    "AnomalySpec",
    "Choices",
    "InterpretationSpec",
    "Rendered",
    "UnitChoice",
    "UnitSpec",
    "coerce_choices",
    "confidence_name",
    "detect_language",
    "filled_fraction",
    "fmt",
    "json_schema",
    "material_class",
    "material_name",
    "parse_answer",
    "render",
    "schema_model",
    "spec_of",
    "token_budget",
    "useful_text",
]

Confidence = Literal["low", "medium", "high"]
CONFIDENCE: tuple[str, ...] = ("low", "medium", "high")
NONE = "none"
UNKNOWN_MATERIAL = "unknown (outside the reference table)"
REASON_MAX = 90
EXPLANATION_MAX = 90
SUMMARY_MAX = 200

#: Closed lists of causes for lateral anomalies, by kind.
ANOMALY_CAUSES: dict[str, tuple[str, ...]] = {
    "conductive": (
        "clay lens",
        "wetter or water-saturated zone",
        "saline water or leachate",
        "metallic object (pipe, cable)",
        "measurement artefact",
    ),
    "resistive": (
        "void or cavity",
        "dry sand or gravel lens",
        "bedrock high or boulders",
        "buried masonry or rubble",
        "measurement artefact",
    ),
}

_FR_MATERIALS = {
    "metallic conductor (pipe, cable, sulphides, graphite)": (
        "conducteur métallique (conduite, câble, sulfures, graphite)"
    ),
    "sea water / saline-saturated sediment": "eau de mer / sédiment saturé d'eau salée",
    "brackish-water-saturated sediment": "sédiment saturé d'eau saumâtre",
    "leachate-saturated waste / plume": "déchets saturés de lixiviat / panache",
    "clay": "argile",
    "marl": "marne",
    "silt": "limon",
    "till (boulder clay)": "till (argile à blocs)",
    "saturated landfill": "remblai de décharge saturé",
    "alluvium / sand (general)": "alluvions / sable (général)",
    "sand and gravel (saturated, fresh water)": "sables et graviers (saturés, eau douce)",
    "weathered granite / saprolite": "granite altéré / saprolite",
    "chalk": "craie",
    "shale": "schiste argileux",
    "sandstone": "grès",
    "porous limestone": "calcaire poreux",
    "dry sand / sandy soil": "sable sec / sol sableux",
    "dry gravel": "gravier sec",
    "dolomite": "dolomie",
    "laterite (duricrust)": "latérite (cuirasse)",
    "massive limestone / karst rock": "calcaire massif / roche karstique",
    "basalt": "basalte",
    "permafrost": "pergélisol",
    "conglomerate": "conglomérat",
    "granite / fresh igneous rock": "granite / roche ignée saine",
    UNKNOWN_MATERIAL: "inconnu (hors du tableau de référence)",
    "clay lens": "lentille d'argile",
    "wetter or water-saturated zone": "zone plus humide ou saturée",
    "saline water or leachate": "eau salée ou lixiviat",
    "metallic object (pipe, cable)": "objet métallique (conduite, câble)",
    "measurement artefact": "artefact de mesure",
    "void or cavity": "vide ou cavité",
    "dry sand or gravel lens": "lentille de sable ou de gravier sec",
    "bedrock high or boulders": "remontée du substratum ou blocs",
    "buried masonry or rubble": "maçonnerie enfouie ou gravats",
}

#: Coarse classes used to score a material choice against a truth case.
_CLASSES = {
    "water": ("sea water", "brackish", "leachate"),
    "metal": ("metallic",),
    "fine": ("clay", "marl", "silt", "till", "landfill"),
    "coarse": ("alluvium", "sand and gravel", "dry sand", "dry gravel"),
    "rock": (
        "granite",
        "chalk",
        "shale",
        "sandstone",
        "limestone",
        "dolomite",
        "laterite",
        "basalt",
        "conglomerate",
        "permafrost",
    ),
}


def material_name(material: str, language: str) -> str:
    """A material (or anomaly cause) in the requested language."""
    return _FR_MATERIALS.get(material, material) if language == "fr" else material


def confidence_name(confidence: str, language: str) -> str:
    """``low``/``medium``/``high`` in the requested language."""
    if language == "fr":
        return {"low": "faible", "medium": "moyenne", "high": "élevée"}.get(confidence, confidence)
    return confidence


def material_class(material: str) -> str:
    """Coarse class of a reference material: water, metal, fine, coarse, rock or unknown."""
    low = material.lower()
    for cls in ("water", "metal", "fine", "coarse", "rock"):  # order: "sand" before "clay"?
        if any(key in low for key in _CLASSES[cls]):
            return cls
    return "unknown"


# -- the per-survey specification --------------------------------------------------------------
@dataclass(frozen=True)
class UnitSpec:
    """A unit the model must describe and its own candidate materials."""

    name: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class AnomalySpec:
    """A lateral anomaly the model must explain, with its closed list of causes."""

    name: str
    kind: str

    @property
    def causes(self) -> tuple[str, ...]:
        """The causes the model may choose for this kind of anomaly."""
        return ANOMALY_CAUSES.get(self.kind, ANOMALY_CAUSES["conductive"])


@dataclass(frozen=True)
class InterpretationSpec:
    """What the model fills for one survey: units, boundaries (labels) and anomalies."""

    units: tuple[UnitSpec, ...]
    boundaries: tuple[str, ...] = ()
    anomalies: tuple[AnomalySpec, ...] = ()


def spec_of(summary: SurveySummary) -> InterpretationSpec:
    """The form for one survey: one entry per unit, boundary and anomaly of its summary."""
    units = tuple(
        UnitSpec(u.name, tuple(c.material for c in u.candidates) or (UNKNOWN_MATERIAL,))
        for u in summary.units
    )
    boundaries = tuple(
        f"{summary.units[i].name}/{summary.units[i + 1].name}"
        for i in range(len(summary.boundaries))
    )
    anomalies = tuple(AnomalySpec(f"A{i + 1}", a.kind) for i, a in enumerate(summary.anomalies))
    return InterpretationSpec(units, boundaries, anomalies)


_Enum = cast(Any, Literal)


def schema_model(spec: InterpretationSpec) -> type[BaseModel]:
    """The pydantic model of the form (a new class per survey: each unit has its own enum)."""
    fields: dict[str, Any] = {}
    for u in spec.units:
        mats = _Enum[u.candidates]
        unit = create_model(
            f"Unit{u.name}",
            material=(mats, Field(description=f"most likely material of {u.name}")),
            alternative=(mats, Field(description="another candidate that fits the data")),
            confidence=(Confidence, Field(description="low, medium or high")),
            reason=(
                str,
                Field(min_length=3, max_length=REASON_MAX, description="one short reason"),
            ),
        )
        fields[u.name] = (unit, ...)
    if spec.boundaries:
        water = create_model(
            "WaterTable",
            supported=(bool, Field(description="does resistivity drop at a plausible boundary")),
            boundary=(_Enum[(*spec.boundaries, NONE)], Field(description="where, or none")),
        )
        fields["water_table"] = (water, ...)
    for a in spec.anomalies:
        anomaly = create_model(
            f"Anomaly{a.name}",
            cause=(
                _Enum[a.causes],
                Field(description=f"most likely cause of the {a.kind} anomaly"),
            ),
            explanation=(str, Field(min_length=3, max_length=EXPLANATION_MAX)),
        )
        fields[a.name] = (anomaly, ...)
    fields["summary"] = (str, Field(min_length=10, max_length=SUMMARY_MAX))
    model: type[BaseModel] = create_model("ERTInterpretation", **fields)
    return model


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.split("/")[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k not in ("$defs", "title")}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def json_schema(spec: InterpretationSpec) -> dict[str, Any]:
    """The form's JSON schema, self-contained (no ``$ref``), every property required."""
    raw = schema_model(spec).model_json_schema()
    out: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    return out


def token_budget(spec: InterpretationSpec) -> int:
    """Generous token count for a complete answer (free text at its maximum length)."""
    per_unit = 40 + REASON_MAX // 2
    per_anomaly = 24 + EXPLANATION_MAX // 2
    water = 24 if spec.boundaries else 0
    return (
        48
        + len(spec.units) * per_unit
        + len(spec.anomalies) * per_anomaly
        + water
        + (SUMMARY_MAX // 2)
    )


# -- reading an answer -------------------------------------------------------------------------
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
                out.append(p if p[-1] in ".!?" else p + ".")
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


def _text(value: Any, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def coerce_choices(
    spec: InterpretationSpec,
    data: dict[str, Any],
    source: str = "parsed",
    *,
    max_confidence: str = "high",
) -> tuple[Choices, list[str]]:
    """Read an answer into :class:`Choices`.

    Anything missing or off-list gets the trivial value (first candidate, the next one as
    alternative, low confidence) and a warning; a confidence above ``max_confidence`` is
    lowered, with a warning.
    """
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
                    f"{u.name}: the model's material {got.get('material')!r} is not one of the "
                    "unit's candidates; the first candidate was used"
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
                f"{u.name}: the model gave its material as its own alternative; the next "
                f"candidate ({alternative}) was used"
            )
        confidence = _pick(got.get("confidence"), CONFIDENCE)
        if confidence is None:
            missing.append(f"{u.name}.confidence")
            confidence = "low"
        elif CONFIDENCE.index(confidence) > CONFIDENCE.index(max_confidence):
            warnings.append(
                f"{u.name}: confidence {confidence!r} lowered to {max_confidence!r}: "
                "resistivity alone, without site information, cannot support more"
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
        warnings.append(
            "the model left these fields empty or off-list; trivial values were used: "
            + ", ".join(missing)
        )
        if len(missing) == _n_fields(spec):
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


def _n_fields(spec: InterpretationSpec) -> int:
    return 4 * len(spec.units) + (1 if spec.boundaries else 0) + 2 * len(spec.anomalies) + 1


def filled_fraction(spec: InterpretationSpec, partial_text: str) -> float:
    """Share of the form's fields already complete in a partial answer (for progress bars)."""
    data = parse_answer(partial_text)
    total = _n_fields(spec)
    done = 0
    for value in data.values():
        if isinstance(value, dict):
            done += sum(1 for v in value.values() if v not in (None, ""))
        elif isinstance(value, str) and value:
            done += 1
    return min(1.0, done / total) if total else 1.0


# -- free text -----------------------------------------------------------------------------------
_STOP = {
    "en": set(
        "the of and a an to in is are was were be this that it its with for on as by from "
        "or at which these there not can may most likely layer water unit".split()
    ),
    "fr": set(
        "le la les des du de un une et est sont dans pour par sur avec au aux ce cette ces "
        "qui que ne pas il elle se son sa ses peut plus couche eau unité".split()
    ),
}
_WORD = re.compile(r"[a-zàâäçéèêëîïôöùûüÿœ']+", re.I)


def detect_language(text: str) -> str | None:
    """``"fr"``, ``"en"`` or ``None`` (too few stop words), from stop-word counts."""
    words = [w.lower().strip("'") for w in _WORD.findall(text)]
    fr = sum(w in _STOP["fr"] for w in words)
    en = sum(w in _STOP["en"] for w in words)
    if max(fr, en) < 2 or fr == en:
        return None
    return "fr" if fr > en else "en"


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{2,}(?:\s+[A-Z][a-z]+)*)")


def _copied(sentence: str, low_prompt: str, n: int = 4) -> bool:
    """Whether the sentence is lifted from the prompt (half its word 4-grams are there)."""
    words = [w.lower() for w in _WORD.findall(sentence)]
    if sentence.lower() in low_prompt:
        return True
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return False
    prompt_words = " ".join(w.lower() for w in _WORD.findall(low_prompt))
    return sum(g in prompt_words for g in grams) >= 0.5 * len(grams)


_LABEL = re.compile(r"\b([UA]\d+)\b")
_LABELLED = re.compile(r"\b(U\d+)\s*[:=(–-]\s*([^,;|)]+)")
_ALL_MATERIALS = sorted({*_FR_MATERIALS, *_FR_MATERIALS.values()}, key=len, reverse=True)


def _contradiction(sentence: str, choices: Choices | None) -> str | None:
    """What in the sentence contradicts the choices: a unit given another material, or a
    material that no unit has as its choice or alternative."""
    if choices is None:
        return None
    chosen = {c.name: c.material for c in choices.units}
    for m in _LABELLED.finditer(sentence):
        label, said = m.group(1), m.group(2).lower()
        mat = chosen.get(label)
        named = next((x for x in _ALL_MATERIALS if x.lower() in said), None)
        if mat is not None and named is not None:
            if named not in (mat, material_name(mat, "fr")):
                return label
    allowed = {x for c in choices.units for m in (c.material, c.alternative)
               for x in (m, material_name(m, "fr"))}  # fmt: skip
    allowed |= {x for a in choices.anomalies for x in (a.cause, material_name(a.cause, "fr"))}
    low = sentence.lower()
    for name in _ALL_MATERIALS:
        if name.lower() in low:
            if name not in allowed and not any(name.lower() in a.lower() for a in allowed):
                return name
            low = low.replace(name.lower(), " ")
    return None


_MARKUP = re.compile(r"[<>{}\[\]|\\]")
_META = {"sentence", "sentences", "phrase", "phrases", "json", "form", "formulaire", "numbers",
         "chiffres"}  # fmt: skip


def _junk(sentence: str) -> str | None:
    """Why the sentence is not prose (markup, instructions, a loop), or ``None``."""
    if _MARKUP.search(sentence):
        return "markup"
    words = [w.lower() for w in _WORD.findall(sentence)]
    if any(w in _META for w in words):
        return "text about the form itself"
    grams = [" ".join(words[i : i + 3]) for i in range(len(words) - 2)]
    if grams and max(grams.count(g) for g in grams) >= 3:
        return "a repeated phrase"
    return None


def useful_text(
    text: str,
    summary: SurveySummary,
    language: str,
    prompt: str,
    choices: Choices | None = None,
) -> tuple[str, list[str]]:
    """Keep the sentences of the model's free text that are worth showing.

    A sentence is dropped when it copies the prompt or the file's title, names something
    (a capitalised name, a unit label) the input does not contain, gives a unit another
    material than ``choices`` do, or states a depth or resistivity the survey does not
    support. The whole text is dropped when it is not in ``language``.

    Returns:
        The kept text (possibly empty) and warnings saying what was dropped and why.
    """
    warnings: list[str] = []
    text = " ".join(text.split())
    if len(text) < 12:
        return "", warnings
    lang = detect_language(text)
    if lang is not None and lang != language:
        warnings.append(
            f"the model's free text is not in the requested language; dropped: {text[:80]!r}"
        )
        return "", warnings
    title = " ".join(summary.survey.title.split()).lower() if summary.survey.title else ""
    low_prompt = prompt.lower()
    kept: list[str] = []
    for sentence in _SENTENCE.split(text):
        s = sentence.strip().lstrip("-*• ").strip()
        if len(s) < 12 or len(_WORD.findall(s)) < 3:
            continue
        if (title and (title in s.lower() or s.lower().rstrip(".") in title)) or _copied(
            s, low_prompt
        ):
            warnings.append(f"the model copied its input; dropped: {s[:80]!r}")
            continue
        known = {u.name for u in summary.units} | {
            f"A{i + 1}" for i in range(len(summary.anomalies))
        }
        ghost = sorted(set(_LABEL.findall(s)) - known)
        if ghost:
            warnings.append(
                f"the model named {', '.join(ghost)}, which do not exist; dropped: {s[:80]!r}"
            )
            continue
        junk = _junk(s)
        if junk is not None:
            warnings.append(f"the model's text is {junk}; dropped: {s[:80]!r}")
            continue
        other = _contradiction(s, choices)
        if other is not None:
            warnings.append(
                f"the model's text contradicts its choices ({other}); dropped: {s[:80]!r}"
            )
            continue
        invented = [n for n in _NAME.findall(s) if n.lower() not in low_prompt]
        if invented:
            warnings.append(
                f"the model named {', '.join(invented)!s}, absent from the survey; dropped: "
                f"{s[:80]!r}"
            )
            continue
        bad = check_numbers(s, summary)
        if bad:
            warnings += [f"{w}; the model's sentence was dropped: {s[:80]!r}" for w in bad]
            continue
        if s in kept:
            warnings.append(f"the model repeated itself; dropped: {s[:80]!r}")
            continue
        kept.append(s)
    return " ".join(kept), warnings


# -- rendering ---------------------------------------------------------------------------------
def _sig(x: float) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, -math.floor(math.log10(abs(x))) + 2)


def fmt(x: float | None, language: str = "en") -> str:
    """A figure as the summary states it (3 significant digits); decimal comma in French."""
    if x is None or not math.isfinite(x):
        return "n/a" if language == "en" else "n.d."
    s = f"{_sig(x):g}"
    return s.replace(".", ",") if language == "fr" else s


class Rendered(BaseModel):
    """The prose of an interpretation, built from the summary and the filled form."""

    geology: str
    recommendations: list[str]
    image_prompt: str
    model_notes: str = ""
    warnings: list[str] = Field(default_factory=list)


_T: dict[str, dict[str, Any]] = {
    "en": {
        "intro": "The section ({n} data, {array}) shows {k} unit(s); {depth}.",
        "depth_model": "depths are model depths below the surface",
        "depth_pseudo": "depths are pseudo-depths (Edwards median depth of investigation), "
        "not true layer depths",
        "depth_log": "depths are measured depths of a vertical log",
        "depth_setraf": "depths follow the SETRAF app's convention for this format",
        "unit": "{name}, {top}–{bottom} m: {lo}–{hi} Ω·m (p10–p90), median {med} Ω·m. "
        "Most likely {mat} (confidence: {conf}); alternative: {alt}{others}.",
        "others": "; other candidates: {names}",
        "single": "; the reference table offers no other candidate",
        "boundary": "Between {a} and {b} m resistivity {trend} gradually from {r1} to {r2} Ω·m "
        "({u}); the boundary depth is approximate.",
        "increases": "increases",
        "decreases": "decreases",
        "water_yes": "A water table may lie at the {u} boundary ({a}–{b} m), where resistivity "
        "drops from {r1} to {r2} Ω·m; this needs confirmation in a well or piezometer.",
        "water_bad": "The model suggested a water table at the {u} boundary, but resistivity "
        "rises there; the data do not support it.",
        "water_no": "The data alone do not establish a water table.",
        "water_unlocated": "The model suggests a water table but names no boundary for it: "
        "the data do not support one, and only a well or piezometer could confirm it.",
        "anomaly": "{kind} anomaly {name} at x {x1}–{x2} m, depth {d1}–{d2} m ({rho} Ω·m "
        "against {bg} Ω·m around it): possibly {cause}.",
        "conductive": "Conductive",
        "resistive": "Resistive",
        "doi": "Depth of investigation: {rule}{depth}; nothing below it is interpreted.",
        "doi_depth": " (about {d} m)",
        "rms": "The inversion fits the data to {rms} % RMS.",
        "nonunique": "Resistivity ranges of materials overlap and the inversion is "
        "non-unique: each assignment is a hypothesis to test.",
        "conf": {"low": "low", "medium": "medium", "high": "high"},
        "rec_drill": "Drill or direct-push at x ≈ {x} m to {d} m to test whether {u} is {mat} "
        "or {alt}.",
        "rec_ip": "Add induced polarisation (IP) to tell clay from saline water.",
        "rec_refraction": "Add seismic refraction to locate the top of the resistive unit.",
        "rec_water": "Measure the water level in a well or piezometer near the line to test "
        "the water table at {a}–{b} m.",
        "rec_anomaly": "Check anomaly {name} (x {x1}–{x2} m) with a crossing line or a trial pit.",
        "rec_invert": "Invert the data before reading depths (`setraf interpret FILE --invert`).",
        "rec_longer": "Use a longer line or larger spacings to see below {d} m.",
        "image": "Cross-section of a resistivity survey with {k} layer(s): {layers}; "
        "colour scale from {lo} to {hi} Ω·m.",
        "layer": "{mat} from {top} to {bottom} m",
    },
    "fr": {
        "intro": "La coupe ({n} données, {array}) montre {k} unité(s) ; {depth}.",
        "depth_model": "les profondeurs sont des profondeurs du modèle sous la surface",
        "depth_pseudo": "les profondeurs sont des pseudo-profondeurs (profondeur médiane "
        "d'investigation d'Edwards), pas des profondeurs de couches",
        "depth_log": "les profondeurs sont celles d'un log vertical mesuré",
        "depth_setraf": "les profondeurs suivent la convention de l'application SETRAF pour ce "
        "format",
        "unit": "{name}, {top}–{bottom} m : {lo}–{hi} Ω·m (p10–p90), médiane {med} Ω·m. "
        "Le plus probable : {mat} (confiance : {conf}) ; alternative : {alt}{others}.",
        "others": " ; autres candidats : {names}",
        "single": " ; le tableau de référence n'offre pas d'autre candidat",
        "boundary": "Entre {a} et {b} m la résistivité {trend} progressivement de {r1} à "
        "{r2} Ω·m ({u}) ; la profondeur de cette limite est approximative.",
        "increases": "augmente",
        "decreases": "diminue",
        "water_yes": "Une nappe pourrait se trouver à la limite {u} ({a}–{b} m), où la "
        "résistivité chute de {r1} à {r2} Ω·m ; à confirmer par un puits ou un piézomètre.",
        "water_bad": "Le modèle a proposé une nappe à la limite {u}, mais la résistivité y "
        "augmente : les données ne la soutiennent pas.",
        "water_no": "Les données seules n'établissent pas de nappe.",
        "water_unlocated": "Le modèle évoque une nappe sans la situer à une limite : les "
        "données ne la soutiennent pas, et seul un puits ou un piézomètre pourrait la "
        "confirmer.",
        "anomaly": "Anomalie {kind} {name} à x {x1}–{x2} m, profondeur {d1}–{d2} m ({rho} Ω·m "
        "contre {bg} Ω·m autour) : peut-être {cause}.",
        "conductive": "conductrice",
        "resistive": "résistante",
        "doi": "Profondeur d'investigation : {rule}{depth} ; rien n'est interprété au-dessous.",
        "doi_depth": " (environ {d} m)",
        "rms": "L'inversion ajuste les données à {rms} % RMS.",
        "nonunique": "Les gammes de résistivité des matériaux se recouvrent et l'inversion "
        "n'est pas unique : chaque attribution est une hypothèse à tester.",
        "conf": {"low": "faible", "medium": "moyenne", "high": "élevée"},
        "rec_drill": "Forage ou pénétromètre à x ≈ {x} m jusqu'à {d} m pour vérifier si {u} "
        "est {mat} ou {alt}.",
        "rec_ip": "Ajouter la polarisation provoquée (PP/IP) pour distinguer argile et eau salée.",
        "rec_refraction": "Ajouter une sismique réfraction pour situer le toit de l'unité "
        "résistante.",
        "rec_water": "Mesurer le niveau d'eau dans un puits ou un piézomètre près du profil "
        "pour tester la nappe vers {a}–{b} m.",
        "rec_anomaly": "Vérifier l'anomalie {name} (x {x1}–{x2} m) par un profil croisé ou une "
        "fosse.",
        "rec_invert": "Inverser les données avant de lire des profondeurs "
        "(`setraf interpret FICHIER --invert`).",
        "rec_longer": "Allonger le profil ou les espacements pour voir sous {d} m.",
        "image": "Coupe de résistivité électrique à {k} couche(s) : {layers} ; échelle de "
        "couleurs de {lo} à {hi} Ω·m.",
        "layer": "{mat} de {top} à {bottom} m",
    },
}

_DOI_FR = {
    "cells whose relative sensitivity": "cellules de sensibilité relative inférieure à 1 % de "
    "la médiane de la couche la plus superficielle masquées (section de sensibilité du fichier)",
    "no model": "pas de modèle : la profondeur médiane d'Edwards du plus grand espacement "
    "borne ce que les données voient (trapèze de la pseudo-section)",
    "direct measurement": "mesure directe : pas de limite de profondeur d'investigation",
    "unknown": "inconnue : le fichier n'a pas de sensibilité ; les cellules profondes peuvent "
    "être mal contraintes",
}


def _doi_rule(summary: SurveySummary, language: str) -> str:
    if language == "fr":
        for key, text in _DOI_FR.items():
            if summary.doi_rule.startswith(key):
                return text
    return summary.doi_rule


def _wet_or_clay(*materials: str) -> bool:
    classes = {material_class(m) for m in materials}
    return ("fine" in classes and ("water" in classes or "coarse" in classes)) or "water" in classes


def render(
    summary: SurveySummary,
    choices: Choices,
    language: str,
    *,
    prompt: str = "",
) -> Rendered:
    """Write the interpretation from the summary (numbers) and the choices (words).

    Args:
        summary: The survey's grounded summary.
        choices: The filled form (from the model, or the trivial one).
        language: ``"fr"`` or ``"en"``.
        prompt: The prompt the model saw (to drop free text copied from it).
    """
    t = _T[language]
    f = functools.partial(fmt, language=language)
    s = summary.survey
    depth_key = {"model": "depth_model", "pseudo": "depth_pseudo", "log": "depth_log"}.get(
        s.depth_kind, "depth_setraf"
    )
    parts = [
        t["intro"].format(
            n=s.n_data or s.n_cells,
            array=s.array or s.format,
            k=len(summary.units),
            depth=t[depth_key],
        )
    ]
    by_name = {c.name: c for c in choices.units}
    for u in summary.units:
        c = by_name[u.name]
        names = [c.material, c.alternative]
        rest = [m for m in (x.material for x in u.candidates) if m not in names]
        if rest:
            others = t["others"].format(names=", ".join(material_name(m, language) for m in rest))
        elif c.alternative == c.material:
            others = t["single"]
        else:
            others = ""
        parts.append(
            t["unit"].format(
                name=u.name,
                top=f(u.top),
                bottom=f(u.bottom),
                lo=f(u.stats.p10),
                hi=f(u.stats.p90),
                med=f(u.stats.median),
                mat=material_name(c.material, language),
                conf=t["conf"][c.confidence],
                alt=material_name(c.alternative, language),
                others=others,
            )
        )
    for i, b in enumerate(summary.boundaries):
        label = f"{summary.units[i].name}/{summary.units[i + 1].name}"
        parts.append(
            t["boundary"].format(
                a=f(b.depth_from),
                b=f(b.depth_to),
                r1=f(b.rho_above),
                r2=f(b.rho_below),
                u=label,
                trend=t["increases"] if b.factor > 1 else t["decreases"],
            )
        )
    warnings: list[str] = []
    water_boundary = None
    if summary.boundaries:
        labels = [
            f"{summary.units[i].name}/{summary.units[i + 1].name}"
            for i in range(len(summary.boundaries))
        ]
        if choices.water_table and choices.water_table_boundary in labels:
            b = summary.boundaries[labels.index(choices.water_table_boundary)]
            if b.factor < 1:
                water_boundary = b
                parts.append(
                    t["water_yes"].format(
                        u=choices.water_table_boundary,
                        a=f(b.depth_from),
                        b=f(b.depth_to),
                        r1=f(b.rho_above),
                        r2=f(b.rho_below),
                    )
                )
            else:
                parts.append(t["water_bad"].format(u=choices.water_table_boundary))
                warnings.append(
                    f"the model claimed a water table at {choices.water_table_boundary}, where "
                    "resistivity increases; it is reported as unsupported"
                )
        elif choices.water_table:
            parts.append(t["water_unlocated"])
            warnings.append(
                "the model claimed a water table without naming a boundary; it is reported "
                "as not located"
            )
        else:
            parts.append(t["water_no"])
    for a, ac in zip(summary.anomalies, choices.anomalies, strict=False):
        parts.append(
            t["anomaly"].format(
                kind=t[a.kind] if a.kind in t else a.kind,
                name=ac.name,
                x1=f(a.x_from),
                x2=f(a.x_to),
                d1=f(a.depth_from),
                d2=f(a.depth_to),
                rho=f(a.rho_median),
                bg=f(a.background),
                cause=material_name(ac.cause, language),
            )
        )
    doi_depth = t["doi_depth"].format(d=f(summary.doi_depth)) if summary.doi_depth else ""
    parts.append(t["doi"].format(rule=_doi_rule(summary, language), depth=doi_depth))
    if s.rms_percent is not None:
        parts.append(t["rms"].format(rms=f(s.rms_percent)))
    parts.append(t["nonunique"])

    recs = _recommendations(summary, choices, language, water_boundary)
    layers = "; ".join(
        t["layer"].format(
            mat=material_name(by_name[u.name].material, language), top=f(u.top), bottom=f(u.bottom)
        )
        for u in summary.units
    )
    image = t["image"].format(
        k=len(summary.units), layers=layers, lo=f(summary.stats.min), hi=f(summary.stats.max)
    )
    notes, note_warnings = useful_text(
        " ".join(choices.free_text()), summary, language, prompt, choices
    )
    return Rendered(
        geology=" ".join(parts),
        recommendations=recs,
        image_prompt=image,
        model_notes=notes,
        warnings=warnings + note_warnings,
    )


def _recommendations(
    summary: SurveySummary, choices: Choices, language: str, water: Any
) -> list[str]:
    t = _T[language]
    f = functools.partial(fmt, language=language)
    by_name = {c.name: c for c in choices.units}
    xs = [c.x for c in summary.survey.cells]
    mid = _sig(0.5 * (min(xs) + max(xs))) if xs else 0.0
    x = summary.anomalies[0].x_from if summary.anomalies else mid
    # test the most uncertain unit (lowest confidence, shallowest first)
    order = {"low": 0, "medium": 1, "high": 2}
    target = min(summary.units, key=lambda u: order.get(by_name[u.name].confidence, 0))
    c = by_name[target.name]
    alt = (
        c.alternative
        if c.alternative != c.material
        else (next((m.material for m in target.candidates if m.material != c.material), c.material))
    )
    recs = [
        t["rec_drill"].format(
            x=f(x),
            d=f(summary.units[-1].bottom),
            u=target.name,
            mat=material_name(c.material, language),
            alt=material_name(alt, language),
        )
    ]
    mats = [m.material for u in summary.units for m in u.candidates]
    if _wet_or_clay(*mats) or any(material_class(m) == "fine" for m in mats):
        recs.append(t["rec_ip"])
    if any(material_class(m) == "rock" for m in mats):
        recs.append(t["rec_refraction"])
    if water is not None:
        recs.append(t["rec_water"].format(a=f(water.depth_from), b=f(water.depth_to)))
    if summary.anomalies:
        a = summary.anomalies[0]
        recs.append(t["rec_anomaly"].format(name="A1", x1=f(a.x_from), x2=f(a.x_to)))
    if summary.survey.depth_kind == "pseudo":
        recs.append(t["rec_invert"])
    elif summary.doi_depth:
        recs.append(t["rec_longer"].format(d=f(summary.doi_depth)))
    return recs
