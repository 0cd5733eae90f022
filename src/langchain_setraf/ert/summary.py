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

import functools
import math
from dataclasses import dataclass, field
from typing import Any

from langchain_setraf.ert.classify import (
    Candidate,
    candidate_materials,
    setraf_class,
    setraf_water_class,
)
from langchain_setraf.ert.i18n import check_language, number, translated
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.layering import LayeredModel
from langchain_setraf.ert.model_section import ModelSection
from langchain_setraf.ert.survey import Cell, Survey

__all__ = [
    "Anomaly",
    "Band",
    "Boundary",
    "LogStats",
    "SurveySummary",
    "Unit",
    "layering_text",
    "summarize",
]

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
    doi_kind: str = "unknown"
    """How the depth of investigation was found: ``model``, ``sensitivity``, ``pseudo``,
    ``log`` or ``unknown`` (:attr:`doi_rule` says it in :attr:`language`)."""
    layering: LayeredModel | None = None
    """The layered reading of the inverted section the units come from (BIC fit, interfaces
    with their depth ranges, what is unresolved); ``None`` without an inversion."""

    # -- words in either language ------------------------------------------------------------
    def doi_text(self, language: str) -> str:
        """The depth-of-investigation rule (:attr:`doi_rule`) in ``language``."""
        coverage = self.inversion.options.doi_coverage if self.inversion is not None else 0.0
        return tr(language, f"doi.{self.doi_kind}", coverage=number(coverage, "g", language))

    def depth_text(self, language: str) -> str:
        """What the depth axis means (:attr:`depth_label`) in ``language``."""
        return tr(language, f"depth_label.{self.survey.depth_kind}")

    def value_text(self, language: str) -> str:
        """What the values are (resistivity or apparent resistivity) in ``language``."""
        kind = self.survey.value_kind
        key = f"value_kind.{kind}"
        return tr(language, key) if key in _VALUE_KINDS else kind

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

    def to_text(self, language: str | None = None) -> str:
        """The summary as plain text for a prompt (numbers with units, one fact a line).

        Args:
            language: ``"en"`` or ``"fr"`` (default: the summary's :attr:`language`).
                Materials keep their English reference names (the form's choices).
        """
        lang = check_language(language or self.language)
        t = functools.partial(tr, lang)
        s = self.survey
        st = self.stats
        na = t("na")
        kind = self.value_text(lang)
        lines = [
            t(
                "summary.survey",
                format=s.format,
                array=s.array or na,
                spacing=_fmt(s.spacing, na),
                length=_fmt(s.line_length, na),
            ),
            t("summary.counts", electrodes=s.n_electrodes, data=s.n_data, cells=s.n_cells),
            t("summary.values", kind=kind, depth=self.depth_text(lang)),
            t(
                "summary.stats",
                kind=kind[:1].upper() + kind[1:],
                min=_fmt(st.min, na),
                p10=_fmt(st.p10, na),
                median=_fmt(st.median, na),
                p90=_fmt(st.p90, na),
                max=_fmt(st.max, na),
            ),
            t(
                "summary.doi",
                rule=self.doi_text(lang),
                depth=t("summary.doi_depth", d=_fmt(self.doi_depth, na))
                if self.doi_depth is not None
                else "",
            ),
        ]
        if self.inversion is not None:
            lines.append(
                t(
                    "summary.inverted",
                    library=self.inversion.library,
                    method=self.inversion.method_name(lang),
                    chi2=number(self.inversion.chi2, ".2f", lang),
                    rms=number(self.inversion.rms_percent, ".2f", lang),
                    iterations=self.inversion.iterations,
                )
            )
        elif s.rms_percent is not None:
            lines.append(t("summary.misfit", rms=s.rms_percent))
        lines.append(t("summary.units"))
        for u in self.units:
            cands = "; ".join(
                t("summary.candidate", material=c.material, low=_fmt(c.low, na),
                  high=_fmt(c.high, na))
                for c in u.candidates
            )  # fmt: skip
            lines.append(
                t(
                    "summary.unit",
                    name=u.name,
                    top=_fmt(u.top, na),
                    bottom=_fmt(u.bottom, na),
                    median=_fmt(u.stats.median, na),
                    p10=_fmt(u.stats.p10, na),
                    p90=_fmt(u.stats.p90, na),
                    candidates=cands or t("summary.no_candidate"),
                )
            )
        for b in self.boundaries:
            lines.append(
                t(
                    "summary.boundary",
                    a=_fmt(b.depth_from, na),
                    b=_fmt(b.depth_to, na),
                    trend=t("summary.increase") if b.factor > 1 else t("summary.decrease"),
                    r1=_fmt(b.rho_above, na),
                    r2=_fmt(b.rho_below, na),
                )
            )
        for a in self.anomalies:
            lines.append(
                t(
                    "summary.anomaly",
                    kind=t(f"kind.{a.kind}"),
                    x1=_fmt(a.x_from, na),
                    x2=_fmt(a.x_to, na),
                    d1=_fmt(a.depth_from, na),
                    d2=_fmt(a.depth_to, na),
                    rho=_fmt(a.rho_median, na),
                    bg=_fmt(a.background, na),
                )
            )
        return "\n".join(lines)


_VALUE_KINDS = ("value_kind.resistivity", "value_kind.apparent resistivity")


def _fmt(x: float | None, na: str = "n/a") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return na
    x = _sig(x)
    return f"{x:g}"


def _doi_mask(
    survey: Survey, model: ModelSection | None = None
) -> tuple[list[Cell], str, float | None]:
    """The cells above the depth of investigation, how it was found (a ``doi.*`` kind of
    :mod:`~langchain_setraf.ert.i18n`), and its depth."""
    cells = survey.cells
    if model is not None:
        kept = [c for c in cells if c.depth < model.doi_m]
        return kept or cells, "model", model.doi_m
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
        return kept or cells, "sensitivity", doi
    if survey.depth_kind == "pseudo":
        doi = max(c.depth for c in cells)
        return cells, "pseudo", doi
    if survey.depth_kind == "log":
        return cells, "log", None
    return cells, "unknown", None


def layering_text(layering: LayeredModel, model: ModelSection, language: str) -> str:
    """Where the units and depths come from, in ``language``: a layered model fitted to the
    data (flat or dipping, its χ²), the section's layered reading, or that reading because
    the fit of the data was rejected (both χ²)."""
    method = model.method_name(language)
    if layering.source == "data":
        return tr(
            language,
            "layering.data",
            geometry=tr(language, f"layering.geometry.{layering.geometry}"),
            chi2=number(layering.chi2 or 0.0, ".2f", language),
            method=method,
        )
    if layering.fallback == "misfit":
        return tr(
            language,
            "layering.fallback.misfit",
            rejected=number(layering.rejected_chi2 or 0.0, ".3g", language),
            image=number(model.chi2, ".2f", language),
            method=method,
        )
    return tr(language, "layering.image", method=method)


def _layering(model: ModelSection | None) -> LayeredModel | None:
    """The layered reading of an inverted section (``None``: no section, or too few levels
    above its depth of investigation to fit layers)."""
    if model is None:
        return None
    try:
        return model.units_model()
    except ValueError:
        return None


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
    lang = check_language(language)
    kept, doi_kind, doi = _doi_mask(survey, model)
    masked_fraction = 1 - len(kept) / len(survey.cells)
    raw_bands = _bands(kept)
    bands = [Band(top, bottom, LogStats.of([c.rho for c in cs])) for top, bottom, cs in raw_bands]

    layering = _layering(model)
    units: list[Unit] = []
    boundaries: list[Boundary] = []
    if layering is not None:
        # an inverted section: one unit per layer of the BIC fit, so a gradational zone is
        # one boundary (with its depth range) instead of a staircase of units
        for k, layer in enumerate(layering.layers):
            bottom = layer.bottom_m if layer.bottom_m is not None else layering.doi_m
            cells = [c for c in kept if layer.top_m <= c.depth < bottom] or [
                min(kept, key=lambda c: abs(c.depth - (layer.top_m + bottom) / 2))
            ]
            st = LogStats.of([c.rho for c in cells])
            units.append(
                Unit(
                    name=f"U{k + 1}",
                    top=_sig(layer.top_m),
                    bottom=_sig(bottom),
                    stats=st,
                    candidates=candidate_materials(st.p10, st.p90),
                    setraf_class=setraf_class(layer.rho, language),
                    water_class=setraf_water_class(layer.rho, language),
                )
            )
        boundaries = [
            Boundary(_sig(i.depth_min_m), _sig(i.depth_max_m), i.rho_above, i.rho_below)
            for i in layering.interfaces
        ]
    groups: list[list[int]] = []
    for i, b in enumerate(bands if layering is None else []):
        # no inverted section: merge adjacent bands with similar medians into units
        if (
            groups
            and abs(b.stats.log_median - bands[groups[-1][-1]].stats.log_median) < BOUNDARY_DECADES
        ):
            groups[-1].append(i)
        else:
            groups.append([i])
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

    t = functools.partial(tr, lang)
    caveats = [t("caveat.overlap"), t("caveat.2d")]
    if model is None or model.regularization != "blocky":
        caveats.append(t("caveat.gradational"))  # a blocky model's caveat says its own
    if survey.depth_kind == "pseudo":
        caveats.insert(0, t("caveat.pseudo"))
    if survey.depth_kind == "setraf":
        caveats.insert(0, t("caveat.setraf"))
    if masked_fraction > 0:
        caveats.append(t("caveat.masked", fraction=masked_fraction))
    if model is not None:
        caveats.insert(
            0,
            t(
                "caveat.inverted",
                library=model.library,
                method=model.method_name(lang),
                spread=t(f"caveat.spread.{model.regularization}"),
                chi2=number(model.chi2, ".2f", lang),
                rms=number(model.rms_percent, ".2f", lang),
                iterations=model.iterations,
            ),
        )
        if layering is not None:
            caveats.insert(1, layering_text(layering, model, lang))
    elif survey.rms_percent is not None:
        caveats.append(t("caveat.rms", rms=survey.rms_percent))
    caveats += [translated(note, lang) for note in survey.notes]

    return SurveySummary(
        survey=survey,
        stats=stats,
        depth_label=tr(lang, f"depth_label.{survey.depth_kind}"),
        depth_max=_sig(max(c.depth for c in survey.cells)),
        doi_rule=tr(
            lang,
            f"doi.{doi_kind}",
            coverage=number(model.options.doi_coverage if model else 0.0, "g", lang),
        ),
        doi_depth=_sig(doi) if doi is not None else None,
        masked_fraction=masked_fraction,
        bands=bands,
        units=units,
        boundaries=boundaries,
        anomalies=anomalies[:5],
        caveats=caveats,
        language=lang,
        inversion=model,
        doi_kind=doi_kind,
        layering=layering,
    )
