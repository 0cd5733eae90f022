"""Check every resistivity and depth a model wrote against the grounded summary.

Numbers are found in the text (``"120 Ω·m"``, ``"50–150 ohm.m"``, ``"1,5 m"``,
``"1 000 ohm-m"``), then each is accepted when the summary supports it: a resistivity
inside the observed range (±25 %) or within 5 % of a figure the summary states; a depth
inside the section (±20 %) and not below the depth of investigation; a position along the
line (``"x 10–20 m"``, ``"x ≈ 35 m"``) inside the line (±5 %). The text is left as
written; unsupported numbers become warnings.

Example:
    >>> from langchain_setraf.ert import load_survey, summarize
    >>> s = summarize(load_survey("examples/two_layer_wenner.dat"))
    >>> check_numbers("A layer of 9000 ohm·m at 3 m.", s)
    ['9000 Ω·m is not supported by the survey (observed 51.2–153 Ω·m)']
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.summary import SurveySummary

__all__ = ["check_numbers", "extract_numbers", "extract_positions"]

_NUM = r"\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?"
_OHM = r"(?:Ω|ohms?|ohm|Ohm|OHM)\s*[·.\-\s]?\s*m\b|Ωm|ohm-?m"
_RANGE = r"\s*(?:–|-|—|to|à|a|and|et)\s*"
_RHO_RE = re.compile(rf"(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?\s*(?:{_OHM})", re.I)
_POS_RE = re.compile(
    rf"\bx\s*(?:=|≈|~|:)?\s*(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?\s*(?:m|mètres?|metres?|meters?)\b",
    re.I,
)
_DEPTH_RE = re.compile(
    rf"(?P<a>{_NUM})(?:{_RANGE}(?P<b>{_NUM}))?\s*(?:m|mètres?|metres?|meters?)\b(?!\s*[·.]?\s*(?:Ω|ohm))",
    re.I,
)


def _to_float(token: str) -> float:
    t = re.sub(r"[ \u00a0\u202f]", "", token)
    if "," in t and "." not in t:
        t = t.replace(",", ".")
    return float(t.replace(",", ""))


def extract_positions(text: str) -> list[float]:
    """Positions along the line written as ``x 10–20 m`` or ``x ≈ 35 m``."""
    out: list[float] = []
    for m in _POS_RE.finditer(text):
        out += [_to_float(g) for g in (m.group("a"), m.group("b")) if g]
    return out


def extract_numbers(text: str) -> tuple[list[float], list[float]]:
    """Return ``(resistivities, depths)`` written in ``text`` (positions ``x … m`` excluded)."""
    rhos: list[float] = []
    for m in _RHO_RE.finditer(text):
        rhos += [_to_float(g) for g in (m.group("a"), m.group("b")) if g]
    rest = _POS_RE.sub(" ", _RHO_RE.sub(" ", text))
    depths: list[float] = []
    for m in _DEPTH_RE.finditer(rest):
        depths += [_to_float(g) for g in (m.group("a"), m.group("b")) if g]
    return rhos, depths


def _g(value: float, language: str) -> str:
    """A figure in a warning: as read (``%g``), with a decimal comma in French."""
    s = f"{value:g}"
    return s.replace(".", ",") if language == "fr" else s


def _near(value: float, allowed: list[float], rel: float = 0.05) -> bool:
    return any(abs(value - a) <= rel * max(abs(a), 1e-9) for a in allowed)


def check_numbers(
    text: str,
    summary: SurveySummary,
    language: str | None = None,
    quoted: Sequence[str] = (),
) -> list[str]:
    """Warnings for resistivities and depths in ``text`` that the summary does not support.

    Args:
        text: What a model (or the package) wrote.
        summary: The survey's grounded summary.
        language: ``"en"`` or ``"fr"``: the language of the warnings (default: the
            summary's).
        quoted: Passages of the user's notes that the report quotes (the site notes the
            model was given): a resistivity or depth within 5 % of one they state is
            traced to them and accepted. Notes that are not quoted trace nothing.
    """
    lang = language or summary.language
    warnings = []
    rhos, depths = extract_numbers(text)
    lo, hi = summary.stats.min, summary.stats.max
    allowed_rho = summary.allowed_resistivities()
    quoted_rho, quoted_depth = extract_numbers(" \n ".join(quoted)) if quoted else ([], [])
    allowed_rho += quoted_rho
    for v in dict.fromkeys(rhos):
        if not (lo / 1.25 <= v <= hi * 1.25) and not _near(v, allowed_rho):
            warnings.append(
                tr(lang, "check.rho", value=_g(v, lang), lo=_g(lo, lang), hi=_g(hi, lang))
            )
    xs = [c.x for c in summary.survey.cells]
    if xs:
        x_lo, x_hi = min(xs), max(xs)
        pad = 0.05 * max(x_hi - x_lo, summary.survey.line_length or 0.0, 1.0)
        for v in dict.fromkeys(extract_positions(text)):
            if not (x_lo - pad <= v <= max(x_hi, summary.survey.line_length or 0.0) + pad):
                warnings.append(
                    tr(
                        lang,
                        "check.position",
                        value=_g(v, lang),
                        lo=_g(x_lo, lang),
                        hi=_g(x_hi, lang),
                    )
                )
    allowed_depth = summary.allowed_depths() + quoted_depth
    dmax = summary.depth_max
    doi = summary.doi_depth
    for v in dict.fromkeys(depths):
        if _near(v, allowed_depth):
            continue
        if v > dmax * 1.2:
            warnings.append(tr(lang, "check.deeper", value=_g(v, lang), dmax=_g(dmax, lang)))
        elif doi is not None and summary.masked_fraction > 0 and v > doi * 1.1:
            warnings.append(tr(lang, "check.below_doi", value=_g(v, lang), doi=_g(doi, lang)))
    return warnings
