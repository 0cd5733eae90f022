"""The French/English prose of an interpretation, written from the summary and the form.

Every depth and resistivity comes from the :class:`~langchain_setraf.ert.SurveySummary`,
never from the model; the model's choices give the words (materials, confidence, causes),
and its own free text is kept beside the prose only when :func:`~langchain_setraf.ert.
checks.useful_text` accepts it. The words come from :mod:`langchain_setraf.ert.i18n`.

Example:
    >>> fmt(1234.5, "fr"), fmt(None, "fr")
    ('1230', 'n.d.')
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from langchain_setraf.ert.checks import useful_text
from langchain_setraf.ert.form import material_class
from langchain_setraf.ert.i18n import (
    array_name,
    check_language,
    confidence_name,
    material_name,
    number,
)
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.parsing import Choices
from langchain_setraf.ert.summary import SurveySummary

__all__ = ["Rendered", "fmt", "render", "span"]


def _sig(x: float) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, -math.floor(math.log10(abs(x))) + 2)


def fmt(x: float | None, language: str = "en") -> str:
    """A figure as the summary states it (3 significant digits); decimal comma in French."""
    if x is None or not math.isfinite(x):
        return tr(language, "na")
    return number(_sig(x), "g", "fr" if language == "fr" else "en")


def span(a: float | None, b: float | None, language: str = "en") -> str:
    """A range as the report writes it: ``"3,85–4,2"``, or one figure when both ends read
    the same (never ``"3,85–3,85"``).

    Example:
        >>> span(3.85, 3.851, "fr"), span(1.04, 2.08, "en")
        ('3,85', '1.04–2.08')
    """
    lo, hi = fmt(a, language), fmt(b, language)
    return lo if lo == hi else f"{lo}–{hi}"


class Rendered(BaseModel):
    """The prose of an interpretation, built from the summary and the filled form."""

    geology: str
    recommendations: list[str]
    image_prompt: str
    model_notes: str = ""
    warnings: list[str] = Field(default_factory=list)


def _wet_or_clay(*materials: str) -> bool:
    classes = {material_class(m) for m in materials}
    return ("fine" in classes and ("water" in classes or "coarse" in classes)) or "water" in classes


def render(
    summary: SurveySummary,
    choices: Choices,
    language: str,
    *,
    prompt: str = "",
    quoted: Sequence[str] = (),
) -> Rendered:
    """Write the interpretation from the summary (numbers) and the choices (words).

    Args:
        summary: The survey's grounded summary.
        choices: The filled form (from the model, or the trivial one).
        language: ``"fr"`` or ``"en"``.
        prompt: The prompt the model saw (to drop free text copied from it).
        quoted: The site-notes passages the report quotes (the only other source a
            figure in the model's free text may be traced to).
    """
    check_language(language)
    t = functools.partial(tr, language)
    f = functools.partial(fmt, language=language)
    s = summary.survey
    depth_key = {"model": "depth_model", "pseudo": "depth_pseudo", "log": "depth_log"}.get(
        s.depth_kind, "depth_setraf"
    )
    parts = [
        t(
            "render.intro",
            n=s.n_data or s.n_cells,
            array=array_name(s.array, language) if s.array else s.format,
            k=len(summary.units),
            depth=t(f"render.{depth_key}"),
        )
    ]
    by_name = {c.name: c for c in choices.units}
    for u in summary.units:
        c = by_name[u.name]
        names = [c.material, c.alternative]
        rest = [m for m in (x.material for x in u.candidates) if m not in names]
        if rest:
            others = t("render.others", names=", ".join(material_name(m, language) for m in rest))
        elif c.alternative == c.material:
            others = t("render.single")
        else:
            others = ""
        parts.append(
            t(
                "render.unit",
                name=u.name,
                depth=span(u.top, u.bottom, language),
                rho=span(u.stats.p10, u.stats.p90, language),
                med=f(u.stats.median),
                mat=material_name(c.material, language),
                conf=confidence_name(c.confidence, language),
                alt=material_name(c.alternative, language),
                others=others,
            )
        )
    for i, b in enumerate(summary.boundaries):
        label = f"{summary.units[i].name}/{summary.units[i + 1].name}"
        parts.append(
            t(
                "render.boundary",
                a=f(b.depth_from),
                b=f(b.depth_to),
                r1=f(b.rho_above),
                r2=f(b.rho_below),
                u=label,
                trend=t("render.increases") if b.factor > 1 else t("render.decreases"),
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
                    t(
                        "render.water_yes",
                        u=choices.water_table_boundary,
                        a=f(b.depth_from),
                        b=f(b.depth_to),
                        r1=f(b.rho_above),
                        r2=f(b.rho_below),
                    )
                )
            else:
                parts.append(t("render.water_bad", u=choices.water_table_boundary))
                warnings.append(t("warn.water_rises", boundary=choices.water_table_boundary))
        elif choices.water_table:
            parts.append(t("render.water_unlocated"))
            warnings.append(t("warn.water_unlocated"))
        else:
            parts.append(t("render.water_no"))
    for a, ac in zip(summary.anomalies, choices.anomalies, strict=False):
        parts.append(
            t(
                "render.anomaly",
                kind=t(f"render.{a.kind}") if a.kind in ("conductive", "resistive") else a.kind,
                name=ac.name,
                x=span(a.x_from, a.x_to, language),
                d=span(a.depth_from, a.depth_to, language),
                rho=f(a.rho_median),
                bg=f(a.background),
                cause=material_name(ac.cause, language),
            )
        )
    doi_depth = t("render.doi_depth", d=f(summary.doi_depth)) if summary.doi_depth else ""
    parts.append(t("render.doi", rule=summary.doi_text(language), depth=doi_depth))
    if s.rms_percent is not None:
        parts.append(t("render.rms", rms=f(s.rms_percent)))
    parts.append(t("render.nonunique"))

    recs = _recommendations(summary, choices, language, water_boundary)
    layers = t("sep").join(
        t(
            "render.layer",
            mat=material_name(by_name[u.name].material, language),
            top=f(u.top),
            bottom=f(u.bottom),
        )
        if f(u.top) != f(u.bottom)
        else t("render.layer_at", mat=material_name(by_name[u.name].material, language), d=f(u.top))
        for u in summary.units
    )
    image = t(
        "render.image",
        k=len(summary.units),
        layers=layers,
        lo=f(summary.stats.min),
        hi=f(summary.stats.max),
    )
    notes, note_warnings = useful_text(
        " ".join(choices.free_text()), summary, language, prompt, choices, quoted
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
    check_language(language)
    t = functools.partial(tr, language)
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
        t(
            "render.rec_drill",
            x=f(x),
            d=f(summary.units[-1].bottom),
            u=target.name,
            mat=material_name(c.material, language),
            alt=material_name(alt, language),
        )
    ]
    mats = [m.material for u in summary.units for m in u.candidates]
    if _wet_or_clay(*mats) or any(material_class(m) == "fine" for m in mats):
        recs.append(t("render.rec_ip"))
    if any(material_class(m) == "rock" for m in mats):
        recs.append(t("render.rec_refraction"))
    if water is not None:
        recs.append(t("render.rec_water", a=f(water.depth_from), b=f(water.depth_to)))
    if summary.anomalies:
        a = summary.anomalies[0]
        recs.append(t("render.rec_anomaly", name="A1", x1=f(a.x_from), x2=f(a.x_to)))
    if summary.survey.depth_kind == "pseudo":
        recs.append(t("render.rec_invert"))
    elif summary.doi_depth:
        recs.append(t("render.rec_longer", d=f(summary.doi_depth)))
    return recs
