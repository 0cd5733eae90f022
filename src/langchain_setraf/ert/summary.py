"""Deterministic statistics that ground the model: log10 stats, depth bands, units,
boundaries, lateral anomalies, depth-of-investigation masking and candidate materials.

Nothing here averages resistivity linearly: every statistic is taken on log10(ρ).

Example:
    >>> from langchain_setraf.ert import load_survey, summarize
    >>> summary = summarize(load_survey("examples/two_layer_wenner.dat"))
    >>> len(summary.units) >= 2
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from langchain_setraf.ert.classify import (
    Candidate,
    candidate_materials,
    setraf_class,
    setraf_water_class,
)
from langchain_setraf.ert.model_section import ModelSection
from langchain_setraf.ert.survey import Cell, Survey

__all__ = ["Anomaly", "Band", "Boundary", "LogStats", "SurveySummary", "Unit", "summarize"]

BOUNDARY_DECADES = 0.15  # a contrast of ×1.4 between adjacent bands is a candidate boundary
ANOMALY_DECADES = 0.3  # cells ±0.3 decades (×2) off their band's median
SENSITIVITY_FRACTION = 0.01


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return math.nan
    pos = (len(sorted_vals) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def _sig(x: float) -> float:
    """Round to 3 significant figures (what the prompt and the report show)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, -math.floor(math.log10(abs(x))) + 2)


@dataclass(frozen=True)
class LogStats:
    """Statistics of resistivities, computed on log10 and reported in Ω·m."""

    n: int
    min: float
    p10: float
    median: float
    p90: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> LogStats:
        logs = sorted(math.log10(v) for v in values if v > 0)
        if not logs:
            raise ValueError("no positive resistivity values")

        def back(q: float) -> float:
            return _sig(10 ** _percentile(logs, q))

        return cls(len(logs), back(0), back(0.1), back(0.5), back(0.9), back(1.0))

    @property
    def log_median(self) -> float:
        return math.log10(self.median)


@dataclass(frozen=True)
class Band:
    """A depth band of the section (DOI-masked cells only)."""

    top: float
    bottom: float
    stats: LogStats


@dataclass(frozen=True)
class Unit:
    """A group of adjacent bands with similar resistivity, and what it could be."""

    name: str
    top: float
    bottom: float
    stats: LogStats
    candidates: list[Candidate]
    setraf_class: str
    water_class: str


@dataclass(frozen=True)
class Boundary:
    """A candidate boundary between two units (gradational: a depth interval)."""

    depth_from: float
    depth_to: float
    rho_above: float
    rho_below: float

    @property
    def factor(self) -> float:
        return self.rho_below / self.rho_above


@dataclass(frozen=True)
class Anomaly:
    """A lateral anomaly: cells of one band that differ from its median by ≥ 0.3 decades."""

    kind: str  # "conductive" | "resistive"
    x_from: float
    x_to: float
    depth_from: float
    depth_to: float
    rho_median: float
    background: float
    n_cells: int


@dataclass
class SurveySummary:
    """Everything the model may state, computed deterministically from the survey."""

    survey: Survey
    stats: LogStats
    depth_label: str
    depth_max: float
    doi_rule: str
    doi_depth: float | None
    masked_fraction: float
    bands: list[Band]
    units: list[Unit]
    boundaries: list[Boundary]
    anomalies: list[Anomaly]
    caveats: list[str] = field(default_factory=list)
    language: str = "en"
    inversion: ModelSection | None = None
    """The inverted model section the summary reads (``None``: the file's own cells)."""

    # -- grounding ---------------------------------------------------------------------------
    def allowed_resistivities(self) -> list[float]:
        """Every resistivity figure the summary states."""
        vals = [self.stats.min, self.stats.p10, self.stats.median, self.stats.p90, self.stats.max]
        for u in self.units:
            vals += [u.stats.min, u.stats.p10, u.stats.median, u.stats.p90, u.stats.max]
            for c in u.candidates:
                vals += [c.low, c.high]
        for a in self.anomalies:
            vals += [a.rho_median, a.background]
        return vals

    def allowed_depths(self) -> list[float]:
        """Every depth figure the summary states (and the section's extent)."""
        vals = [0.0, self.depth_max]
        if self.doi_depth is not None:
            vals.append(self.doi_depth)
        for u in self.units:
            vals += [u.top, u.bottom]
        for b in self.boundaries:
            vals += [b.depth_from, b.depth_to]
        for a in self.anomalies:
            vals += [a.depth_from, a.depth_to, a.x_from, a.x_to]
        length = self.survey.line_length
        if length:
            vals.append(length)
        if self.survey.spacing:
            vals.append(self.survey.spacing)
        return vals

    # -- rendering ---------------------------------------------------------------------------
    def facts(self) -> dict[str, Any]:
        """Survey facts as a flat dict (for reports and JSON)."""
        s = self.survey
        return {
            "file": s.path.name,
            "format": s.format,
            "title": s.title,
            "array": s.array,
            "electrode_spacing_m": s.spacing,
            "line_length_m": s.line_length,
            "electrodes": s.n_electrodes,
            "data": s.n_data,
            "cells": s.n_cells,
            "values": s.value_kind,
            "depth": self.depth_label,
            "rms_percent": s.rms_percent,
            "ip": f"{s.ip_quantity} ({s.ip_unit})" if s.ip_quantity else None,
            "inversion": self.inversion.describe() if self.inversion else None,
            "chi2": round(self.inversion.chi2, 2) if self.inversion else None,
        }

    def to_text(self) -> str:
        """The summary as plain text for a prompt (numbers with units, one fact a line)."""
        s = self.survey
        st = self.stats
        lines = [
            f"Format: {s.format}; array: {s.array or 'n/a'}; "
            f"electrode spacing: {_fmt(s.spacing)} m; line length: {_fmt(s.line_length)} m",
            f"Electrodes: {s.n_electrodes}; data: {s.n_data}; cells: {s.n_cells}",
            f"Values: {s.value_kind} in ohm·m; depth axis: {self.depth_label}",
            f"{s.value_kind.capitalize()} (log10 statistics): min {_fmt(st.min)}, "
            f"p10 {_fmt(st.p10)}, median {_fmt(st.median)}, p90 {_fmt(st.p90)}, "
            f"max {_fmt(st.max)} ohm·m",
            f"Depth of investigation: {self.doi_rule}"
            + (f" (about {_fmt(self.doi_depth)} m)" if self.doi_depth is not None else ""),
        ]
        if self.inversion is not None:
            lines.append(
                f"Inverted here ({self.inversion.library}, 2.5-D smooth): chi² "
                f"{self.inversion.chi2:.2f}, RMS {self.inversion.rms_percent:.2f} %, "
                f"{self.inversion.iterations} iteration(s)"
            )
        elif s.rms_percent is not None:
            lines.append(f"Inversion misfit: RMS {s.rms_percent:g} %")
        lines.append("Units (top to bottom):")
        for u in self.units:
            cands = "; ".join(
                f"{c.material} ({_fmt(c.low)}–{_fmt(c.high)} ohm·m)" for c in u.candidates
            )
            lines.append(
                f"- {u.name}: {_fmt(u.top)}–{_fmt(u.bottom)} m, median {_fmt(u.stats.median)} "
                f"ohm·m (p10–p90 {_fmt(u.stats.p10)}–{_fmt(u.stats.p90)}); "
                f"candidates: {cands or 'none in the reference table'}"
            )
        for b in self.boundaries:
            trend = "increase" if b.factor > 1 else "decrease"
            lines.append(
                f"Boundary (gradational) between {_fmt(b.depth_from)} and {_fmt(b.depth_to)} m: "
                f"{trend} from {_fmt(b.rho_above)} to {_fmt(b.rho_below)} ohm·m"
            )
        for a in self.anomalies:
            lines.append(
                f"Lateral {a.kind} anomaly: x {_fmt(a.x_from)}–{_fmt(a.x_to)} m, depth "
                f"{_fmt(a.depth_from)}–{_fmt(a.depth_to)} m, {_fmt(a.rho_median)} ohm·m vs "
                f"background {_fmt(a.background)} ohm·m"
            )
        return "\n".join(lines)


_CAVEATS = {
    "en": {
        "overlap": "Resistivity ranges of materials overlap by orders of magnitude: each unit "
        "has alternatives, and site information (boreholes, geology, water quality) decides.",
        "2d": "A 2-D section assumes structures extend perpendicular to the line; off-line "
        "features (buildings, pipes, slopes) can project into it.",
        "gradational": "Boundaries of a smooth inversion or a pseudo-section are gradational; "
        "their depths are approximate.",
        "pseudo": "Depths are pseudo-depths (Edwards median depth of investigation) of apparent "
        "resistivities, not the depths of layers: invert the data before drawing depths.",
        "setraf": "Depths follow the SETRAF app's convention for this format, not a computed "
        "depth of investigation.",
        "masked": "{fraction:.0%} of the cells lie below the depth of investigation and were "
        "left out; do not interpret them.",
        "rms": "The inversion fits the data to {rms:g} % RMS.",
        "inverted": "Depths are true depths of a smooth 2.5-D inversion ({library}, chi² "
        "{chi2:.2f}, RMS {rms:.2f} %, {iterations} iteration(s)); a smooth model spreads "
        "sharp boundaries over several cells, and one model is not the only one that fits.",
    },
    "fr": {
        "overlap": "Les gammes de résistivité des matériaux se recouvrent sur plusieurs ordres "
        "de grandeur : chaque unité a des alternatives, que seules les informations de site "
        "(forages, géologie, qualité de l'eau) tranchent.",
        "2d": "Une coupe 2-D suppose des structures perpendiculaires au profil ; des objets "
        "hors profil (bâtiments, conduites, pentes) peuvent s'y projeter.",
        "gradational": "Les limites d'une inversion lissée ou d'une pseudo-section sont "
        "graduelles ; leurs profondeurs sont approximatives.",
        "pseudo": "Les profondeurs sont des pseudo-profondeurs (profondeur médiane "
        "d'investigation d'Edwards) de résistivités apparentes, pas des profondeurs de "
        "couches : inverser les données avant de lire des profondeurs.",
        "setraf": "Les profondeurs suivent la convention de l'application SETRAF pour ce "
        "format, pas une profondeur d'investigation calculée.",
        "masked": "{fraction:.0%} des cellules sont sous la profondeur d'investigation et ont "
        "été écartées : ne pas les interpréter.",
        "rms": "L'inversion ajuste les données à {rms:g} % RMS.",
        "inverted": "Les profondeurs sont les profondeurs vraies d'une inversion 2,5-D "
        "lissée ({library}, chi² {chi2:.2f}, RMS {rms:.2f} %, {iterations} itération(s)) ; "
        "un modèle lissé étale les limites franches sur plusieurs cellules, et d'autres "
        "modèles ajustent aussi les données.",
    },
}


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = _sig(x)
    return f"{x:g}"


def _depth_label(survey: Survey) -> str:
    return {
        "model": "model depth of the inverted section (m)",
        "pseudo": "pseudo-depth = Edwards median depth of investigation (m), not a true depth",
        "log": "measured depth of a vertical log (m)",
        "setraf": "depth as defined by the SETRAF app for this format (m), not a computed depth",
    }[survey.depth_kind]


def _doi_mask(
    survey: Survey, model: ModelSection | None = None
) -> tuple[list[Cell], str, float | None]:
    cells = survey.cells
    if model is not None:
        kept = [c for c in cells if c.depth < model.doi_m]
        rule = (
            "inverted model: levels whose median data-weighted coverage is below "
            f"{model.options.doi_coverage:g} of the surface level's are below the depth of "
            "investigation and masked"
        )
        return kept or cells, rule, model.doi_m
    if survey.has_sensitivity:
        shallow = min(c.depth for c in cells)
        top = sorted(c.sensitivity or 0.0 for c in cells if c.depth == shallow)
        ref = top[len(top) // 2] if top else 0.0
        limit = ref * SENSITIVITY_FRACTION
        kept = [c for c in cells if (c.sensitivity or 0.0) >= limit]
        # DOI: the shallowest depth level where most cells are masked
        levels: dict[float, list[bool]] = {}
        for c in cells:
            levels.setdefault(c.depth, []).append((c.sensitivity or 0.0) < limit)
        doi = next((d for d in sorted(levels) if sum(levels[d]) > len(levels[d]) / 2), None)
        rule = (
            "cells whose relative sensitivity is below 1 % of the shallowest layer's median "
            "are masked (sensitivity section of the file)"
        )
        return kept or cells, rule, doi
    if survey.depth_kind == "pseudo":
        doi = max(c.depth for c in cells)
        return (
            cells,
            (
                "no model: the deepest Edwards median depth of the largest spacing bounds what the "
                "data can see (pseudo-section trapezoid)"
            ),
            doi,
        )
    if survey.depth_kind == "log":
        return cells, "direct measurement: no depth-of-investigation limit applies", None
    return cells, "unknown: the file has no sensitivity; deep cells may be unconstrained", None


def _bands(cells: list[Cell], max_bands: int = 6) -> list[tuple[float, float, list[Cell]]]:
    levels = sorted({round(c.depth, 2) for c in cells})
    by_level: dict[float, list[Cell]] = {}
    for c in cells:
        by_level.setdefault(round(c.depth, 2), []).append(c)
    if len(levels) <= max_bands:
        groups = [[lv] for lv in levels]
    else:
        target = len(cells) / max_bands
        groups, current, count = [], [], 0
        for lv in levels:
            current.append(lv)
            count += len(by_level[lv])
            if count >= target and len(groups) < max_bands - 1:
                groups.append(current)
                current, count = [], 0
        if current:
            groups.append(current)
    out = []
    for g in groups:
        members = [c for lv in g for c in by_level[lv]]
        out.append((g[0], g[-1], members))
    return out


def summarize(
    survey: Survey, *, language: str = "en", model: ModelSection | None = None
) -> SurveySummary:
    """Compute the grounded summary of a survey.

    Args:
        survey: A survey from :func:`~langchain_setraf.ert.load_survey`.
        language: ``"en"`` or ``"fr"`` for SETRAF's class names on each unit
            (:attr:`Unit.setraf_class`, :attr:`Unit.water_class`).
        model: An inverted section of this survey
            (:func:`~langchain_setraf.ert.invert.invert_survey`): the summary then reads its
            cells at true depths, masks them below its depth of investigation and reports
            χ² and RMS instead of pseudo-depths.

    Raises:
        ValueError: The survey has no positive resistivity.
    """
    if model is not None:
        survey = model.to_survey(survey)
    if not survey.cells:
        raise ValueError(f"{survey.path}: no resistivity cells to summarise")
    stats = LogStats.of([c.rho for c in survey.cells])
    kept, rule, doi = _doi_mask(survey, model)
    masked_fraction = 1 - len(kept) / len(survey.cells)
    raw_bands = _bands(kept)
    bands = [Band(top, bottom, LogStats.of([c.rho for c in cs])) for top, bottom, cs in raw_bands]

    # merge adjacent bands with similar medians into units
    groups: list[list[int]] = []
    for i, b in enumerate(bands):
        if (
            groups
            and abs(b.stats.log_median - bands[groups[-1][-1]].stats.log_median) < BOUNDARY_DECADES
        ):
            groups[-1].append(i)
        else:
            groups.append([i])
    units = []
    boundaries = []
    for k, g in enumerate(groups):
        cells = [c for i in g for c in raw_bands[i][2]]
        st = LogStats.of([c.rho for c in cells])
        top, bottom = bands[g[0]].top, bands[g[-1]].bottom
        units.append(
            Unit(
                name=f"U{k + 1}",
                top=_sig(top),
                bottom=_sig(bottom),
                stats=st,
                candidates=candidate_materials(st.p10, st.p90),
                setraf_class=setraf_class(st.median, language),
                water_class=setraf_water_class(st.median, language),
            )
        )
        if k > 0:
            prev = units[k - 1]
            boundaries.append(Boundary(prev.bottom, units[k].top, prev.stats.median, st.median))

    anomalies = []
    for (_top, _bottom, cs), band in zip(raw_bands, bands, strict=True):
        med = band.stats.log_median
        flagged = sorted(
            (c for c in cs if abs(math.log10(c.rho) - med) >= ANOMALY_DECADES), key=lambda c: c.x
        )
        xs = sorted({c.x for c in cs})
        step = min((b - a for a, b in zip(xs, xs[1:], strict=False)), default=1.0) or 1.0
        run: list[Cell] = []
        for c in [*flagged, None]:
            if (
                c is not None
                and run
                and (c.x - run[-1].x) <= 2.01 * step
                and (math.log10(c.rho) > med) == (math.log10(run[-1].rho) > med)
            ):
                run.append(c)
                continue
            if len({r.x for r in run}) >= 2:
                anomalies.append(
                    Anomaly(
                        kind="resistive" if math.log10(run[0].rho) > med else "conductive",
                        x_from=_sig(run[0].x),
                        x_to=_sig(run[-1].x),
                        depth_from=_sig(min(r.depth for r in run)),
                        depth_to=_sig(max(r.depth for r in run)),
                        rho_median=LogStats.of([r.rho for r in run]).median,
                        background=band.stats.median,
                        n_cells=len(run),
                    )
                )
            run = [c] if c is not None else []
    anomalies.sort(
        key=lambda a: a.n_cells * abs(math.log10(a.rho_median) - math.log10(a.background)),
        reverse=True,
    )

    text = _CAVEATS["fr" if language == "fr" else "en"]
    caveats = [text["overlap"], text["2d"], text["gradational"]]
    if survey.depth_kind == "pseudo":
        caveats.insert(0, text["pseudo"])
    if survey.depth_kind == "setraf":
        caveats.insert(0, text["setraf"])
    if masked_fraction > 0:
        caveats.append(text["masked"].format(fraction=masked_fraction))
    if model is not None:
        caveats.insert(
            0,
            text["inverted"].format(
                library=model.library,
                chi2=model.chi2,
                rms=model.rms_percent,
                iterations=model.iterations,
            ),
        )
    elif survey.rms_percent is not None:
        caveats.append(text["rms"].format(rms=survey.rms_percent))
    caveats += survey.notes

    return SurveySummary(
        survey=survey,
        stats=stats,
        depth_label=_depth_label(survey),
        depth_max=_sig(max(c.depth for c in survey.cells)),
        doi_rule=rule,
        doi_depth=_sig(doi) if doi is not None else None,
        masked_fraction=masked_fraction,
        bands=bands,
        units=units,
        boundaries=boundaries,
        anomalies=anomalies[:5],
        caveats=caveats,
        language=language,
        inversion=model,
    )
