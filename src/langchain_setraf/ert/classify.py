"""Resistivity → candidate materials: overlapping, cited ranges compared in log10.

Ranges come from ``../shared/docs/ert-reference.md`` §3.1. Evidence tags as there:
[V] checked against the source text; [M] recalled from the named reference, not checked.
Resistivity alone does not identify lithology: ranges overlap by orders of magnitude, so
every unit gets several candidates, ranked by how much of its observed range they cover.

Example:
    >>> [c.material for c in candidate_materials(20, 60)][:3]
    ['silt', 'marl', 'alluvium / sand (general)']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from langchain_setraf.ert.i18n import text as tr

__all__ = [
    "MATERIALS",
    "Candidate",
    "Material",
    "candidate_materials",
    "setraf_class",
    "setraf_water_class",
]


@dataclass(frozen=True)
class Material:
    """A material with its reference resistivity range (Ω·m) and sources."""

    name: str
    low: float
    high: float
    sources: str


@dataclass(frozen=True)
class Candidate:
    """A material that could explain a unit, with the share of the unit's range it covers."""

    material: str
    low: float
    high: float
    overlap: float
    sources: str


LOKE = "Loke, Tutorial 2-D/3-D electrical imaging, Table 1 [M]"
TELFORD = "Telford, Geldart & Sheriff 1990, Tables 5.2/5.3 [M]"
REYNOLDS = "Reynolds 2011, Table 7.1 [V]"

MATERIALS: tuple[Material, ...] = (
    Material("metallic conductor (pipe, cable, sulphides, graphite)", 1e-6, 1.5,
             f"{LOKE}; {REYNOLDS}"),
    Material("sea water / saline-saturated sediment", 0.05, 1.0, f"{LOKE}; {TELFORD}"),
    Material("brackish-water-saturated sediment", 1.0, 10.0,
             "EC 1 000–10 000 µS/cm conversion (ERT reference §3.1)"),
    Material("leachate-saturated waste / plume", 1.0, 20.0, "ERT reference §3.1 [M]"),
    Material("clay", 1.0, 100.0, f"{LOKE}; {TELFORD}; {REYNOLDS}"),
    Material("marl", 3.0, 70.0, TELFORD),
    Material("silt", 10.0, 100.0, "practitioner range, ERT reference §3.1 [M]"),
    Material("till (boulder clay)", 15.0, 35.0, REYNOLDS),
    Material("saturated landfill", 15.0, 30.0, REYNOLDS),
    Material("alluvium / sand (general)", 10.0, 800.0, f"{LOKE}; {TELFORD}"),
    Material("sand and gravel (saturated, fresh water)", 30.0, 400.0,
             f"{REYNOLDS}; Archie worked numbers, ERT reference §3.2"),
    Material("weathered granite / saprolite", 30.0, 500.0, REYNOLDS),
    Material("chalk", 50.0, 150.0, REYNOLDS),
    Material("shale", 20.0, 2000.0, f"{LOKE}; {TELFORD}; {REYNOLDS}"),
    Material("sandstone", 8.0, 4000.0, f"{LOKE} (Telford/Reynolds give far higher maxima)"),
    Material("porous limestone", 50.0, 400.0, LOKE),
    Material("dry sand / sandy soil", 80.0, 1050.0, REYNOLDS),
    Material("dry gravel", 300.0, 1500.0, f"{REYNOLDS}; Beresnev et al. 2002 [M]"),
    Material("dolomite", 350.0, 5000.0, f"{TELFORD}; {REYNOLDS}"),
    Material("laterite (duricrust)", 800.0, 1500.0, REYNOLDS),
    Material("massive limestone / karst rock", 1000.0, 1e7, f"{TELFORD}; {REYNOLDS}"),
    Material("basalt", 1000.0, 1e6, LOKE),
    Material("permafrost", 1000.0, 1e5, REYNOLDS),
    Material("conglomerate", 2000.0, 1e4, f"{TELFORD}; {REYNOLDS}"),
    Material("granite / fresh igneous rock", 5000.0, 1e6, f"{LOKE} (Telford: from 300)"),
)  # fmt: skip


def candidate_materials(rho_low: float, rho_high: float, top_k: int = 4) -> list[Candidate]:
    """Materials whose reference range overlaps the observed range ``[rho_low, rho_high]``.

    Ranked by the fraction of the observed log10 range covered; ties broken by how close
    the material's log-centre is to the observed log-centre.

    Args:
        rho_low: Lower observed resistivity (e.g. the unit's 10th percentile), Ω·m.
        rho_high: Upper observed resistivity (e.g. the 90th percentile), Ω·m.
        top_k: How many candidates to return.
    """
    if rho_low <= 0 or rho_high <= 0:
        raise ValueError("resistivities must be positive")
    lo, hi = sorted((math.log10(rho_low), math.log10(rho_high)))
    width = max(hi - lo, 0.05)
    centre = 0.5 * (lo + hi)
    scored = []
    for mat in MATERIALS:
        mlo, mhi = math.log10(mat.low), math.log10(mat.high)
        overlap = min(hi, mhi) - max(lo, mlo)
        if hi - lo < 0.05:  # a single value: inside or not
            overlap = width if mlo <= centre <= mhi else overlap
        if overlap <= 0 and not (mlo <= centre <= mhi):
            continue
        share = max(0.0, min(1.0, overlap / width))
        distance = abs(0.5 * (mlo + mhi) - centre)
        scored.append((share, -distance, mat))
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
    return [
        Candidate(m.name, m.low, m.high, round(share, 2), m.sources)
        for share, _, m in scored[:top_k]
    ]


def _lang_or_en(language: str) -> str:
    return language if language in ("fr", "en") else "en"


def setraf_class(rho: float, language: str = "fr") -> str:
    """SETRAF's own pre-class of a mean resistivity (the app's thresholds)."""
    lang = _lang_or_en(language)
    if rho < 100:
        return tr(lang, "setraf_class.0")
    if rho < 300:
        return tr(lang, "setraf_class.1")
    if rho < 600:
        return tr(lang, "setraf_class.2")
    return tr(lang, "setraf_class.3")


def setraf_water_class(rho: float, language: str = "fr") -> str:
    """SETRAF's water classes: seawater ≤ 1, saline 1–10, fresh 10–100, pure > 100 Ω·m."""
    lang = _lang_or_en(language)
    if rho <= 1:
        return tr(lang, "water_class.0")
    if rho <= 10:
        return tr(lang, "water_class.1")
    if rho <= 100:
        return tr(lang, "water_class.2")
    return tr(lang, "water_class.3")
