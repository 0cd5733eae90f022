"""Layers from an inverted section: a piecewise-constant fit chosen by an information criterion.

A smooth inversion of a layered earth is a gradient by construction; slicing it at fixed
steps of resistivity invents units. Instead, the laterally averaged log-resistivity profile
(levels above the depth of investigation, each weighted by its thickness) is fitted by 1…N
constant layers (exact dynamic programming), and the number of layers is the one with the
lowest Bayesian information criterion ``n·ln(max(RSS/n, s²)) + (2k-1)·ln(n)``. The floor
``s`` (default 0.04 decades, ~10 %) is the resolution the section can claim: a gradational
zone that a staircase would fit better than ``s`` earns no extra layer, so it stays one
boundary. Each interface comes with the depths where moving it raises the misfit by less
than one standard error (Δχ² ≤ 1).

What the data cannot resolve is said: below the depth of investigation nothing; under a
conductor a resistive basement gives only a lower bound of its resistivity, while the
conductor is known by its conductance (thickness / resistivity, siemens).

Pure Python, like :mod:`~langchain_setraf.ert.model_section`.

Example:
    >>> tops = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    >>> fit = fit_layers(tops, [1.0] * 6, [2.0, 2.0, 2.0, 3.0, 3.0, 3.0])
    >>> [round(layer.rho) for layer in fit.layers], fit.interfaces[0].depth_m
    ([100, 1000], 3.0)
    >>> fit.layers[-1].lower_bound, fit.conductance_s  # 3 m of 100 Ω·m over a resistor
    (True, 0.03)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Interface",
    "Layer",
    "LayeredModel",
    "equivalence",
    "fit_layers",
    "layered_model",
]

#: Resistivity ratio from which a deepest layer under a conductor is a "resistive basement".
BASEMENT_RATIO = 3.0


@dataclass(frozen=True)
class Layer:
    """One layer of the fit.

    Attributes:
        top_m: Depth of its top, m.
        bottom_m: Depth of its base, m; ``None`` for the deepest (it goes on below the depth
            of investigation, where the data say nothing).
        rho: Its resistivity, Ω·m (geometric mean of the levels it spans, or the value
            fitted to the data); for a :attr:`lower_bound` fitted to the data, the low end
            of its one-standard-deviation range.
        lower_bound: ``True`` when only a lower bound is resolved (a resistive basement
            under a conductor): the true value may be much higher.
        rho_sd_log: Standard deviation of ln ρ from the posterior covariance of a fit of
            the data (:mod:`~langchain_setraf.ert.layer_refine`); ``None`` for a fit of the
            image.
    """

    top_m: float
    bottom_m: float | None
    rho: float
    lower_bound: bool = False
    rho_sd_log: float | None = None

    @property
    def rho_range(self) -> tuple[float, float] | None:
        """ρ within one standard deviation, Ω·m (``None`` when no uncertainty is known;
        ``(rho, inf)`` for a lower bound)."""
        if self.rho_sd_log is None:
            return None
        if self.lower_bound:
            return self.rho, math.inf
        return self.rho * math.exp(-self.rho_sd_log), self.rho * math.exp(self.rho_sd_log)


@dataclass(frozen=True)
class Interface:
    """A boundary between two layers, with the depths the data allow for it.

    Attributes:
        depth_m: Best-fitting depth, m.
        depth_min_m: Shallowest depth within one standard error (Δχ² ≤ 1), m.
        depth_max_m: Deepest depth within one standard error, m.
        rho_above: Resistivity above, Ω·m.
        rho_below: Resistivity below, Ω·m.
        depth_sd_m: Standard deviation of the depth from the posterior covariance of a fit
            of the data (``None`` for a fit of the image; then the range is Δχ² ≤ 1 of the
            image profile).
        slope: Depth increase per metre along the line (a dipping fit; 0 when flat).
        slope_sd: Standard deviation of the slope (a dipping fit of the data).
        x_ref_m: Position along the line where :attr:`depth_m` holds (the line's centre
            for a dipping fit).
    """

    depth_m: float
    depth_min_m: float
    depth_max_m: float
    rho_above: float
    rho_below: float
    depth_sd_m: float | None = None
    slope: float = 0.0
    slope_sd: float | None = None
    x_ref_m: float = 0.0

    def depth_at(self, x: float) -> float:
        """Depth of the interface at ``x`` along the line, m (flat: :attr:`depth_m`)."""
        return self.depth_m + self.slope * (x - self.x_ref_m)


@dataclass(frozen=True)
class LayeredModel:
    """The layered reading of a section.

    Attributes:
        layers: Top to bottom.
        interfaces: One between each pair of layers.
        bic: The criterion for 1, 2, … layers (the chosen count has the lowest).
        doi_m: The depth of investigation the fit stopped at, m.
        conductance_s: Conductance (thickness/resistivity, S) of the conductor above a
            resistive basement, the quantity the data do resolve; ``None`` otherwise.
        unresolved: Codes of what the data cannot resolve: ``"below_doi"`` (always: nothing
            below ``doi_m``), ``"basement_lower_bound"`` (the basement's resistivity is a
            lower bound), ``"conductor_equivalence"`` (the conductor's thickness and
            resistivity trade off; their ratio is known).
        floor_decades: The resolution floor ``s`` used, decades of resistivity.
        source: ``"image"`` (a fit of the laterally averaged inverted section) or ``"data"``
            (that fit refined against the measured data,
            :func:`~langchain_setraf.ert.layer_refine.refine_layers`).
        geometry: ``"flat"`` or ``"dipping"`` (each interface ``z = a + b·x``).
        chi2: χ²/N of the layered model against the data (a fit of the data only).
        conductance_sd_s: Standard deviation of :attr:`conductance_s` (a fit of the data).
        fallback: Why a refinement against the data was not kept (``""``: none was
            tried, or it was kept): ``"misfit"`` (its χ² is much higher than the
            image's, see :attr:`rejected_chi2`) or ``"failed"`` (the fit did not run).
        rejected_chi2: χ²/N of the refined fit that was not kept.
    """

    layers: tuple[Layer, ...]
    interfaces: tuple[Interface, ...]
    bic: tuple[float, ...]
    doi_m: float
    conductance_s: float | None
    unresolved: tuple[str, ...]
    floor_decades: float
    source: str = "image"
    geometry: str = "flat"
    chi2: float | None = None
    conductance_sd_s: float | None = None
    fallback: str = ""
    rejected_chi2: float | None = None

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def _segment_cost(values: Sequence[float], weights: Sequence[float]) -> list[list[float]]:
    """``cost[i][j]``: weighted residual sum of squares of levels i..j-1 about their mean."""
    n = len(values)
    cw = [0.0] * (n + 1)
    cwv = [0.0] * (n + 1)
    cwv2 = [0.0] * (n + 1)
    for i, (v, w) in enumerate(zip(values, weights, strict=True)):
        cw[i + 1] = cw[i] + w
        cwv[i + 1] = cwv[i] + w * v
        cwv2[i + 1] = cwv2[i] + w * v * v
    cost = [[0.0] * (n + 1) for _ in range(n + 1)]
    for i in range(n):
        for j in range(i + 1, n + 1):
            w = cw[j] - cw[i]
            s = cwv[j] - cwv[i]
            cost[i][j] = max(0.0, (cwv2[j] - cwv2[i]) - s * s / w) if w > 0 else 0.0
    return cost


def _gap_cost(values: Sequence[float], weights: Sequence[float]) -> list[list[float]]:
    """``gap[g][i]``: misfit of levels g..i-1 to the straight ramp from level g-1 to level i.

    A gradational zone between two layers costs only its departure from a ramp, so the fit
    does not need a staircase of thin layers to follow it.
    """
    n = len(values)
    gap = [[math.inf] * (n + 1) for _ in range(n + 1)]
    for g in range(n + 1):
        gap[g][g] = 0.0
        if g == 0:
            continue
        for i in range(g + 1, n):
            v0, v1 = values[g - 1], values[i]
            span = i - g + 1
            gap[g][i] = sum(
                weights[t] * (values[t] - (v0 + (v1 - v0) * (t - g + 1) / span)) ** 2
                for t in range(g, i)
            )
    return gap


def _best_split(
    cost: list[list[float]], gap: list[list[float]], n: int, k: int, min_levels: int
) -> tuple[float, list[tuple[int, int, int]]]:
    """Least-cost k layers of ≥ ``min_levels`` levels with ramps between them:
    (cost, [(gap start, start, end)]); the cost is infinite when none fits."""
    inf = math.inf
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    back: list[list[tuple[int, int]]] = [[(0, 0)] * (n + 1) for _ in range(k + 1)]
    for j in range(min_levels, n + 1):
        best[1][j] = cost[0][j]
    for s in range(2, k + 1):
        for j in range(s, n + 1):
            for i in range(s - 1, j - min_levels + 1):
                for g in range(s - 1, i + 1):
                    c = best[s - 1][g] + gap[g][i] + cost[i][j]
                    if c < best[s][j]:
                        best[s][j], back[s][j] = c, (g, i)
    out = []
    j = n
    for s in range(k, 1, -1):
        g, i = back[s][j]
        out.append((g, i, j))
        j = g
    out.append((0, 0, j))
    return best[k][n], out[::-1]


def fit_layers(
    tops: Sequence[float],
    thicknesses: Sequence[float],
    log10_rho: Sequence[float],
    *,
    max_layers: int = 6,
    floor_decades: float = 0.04,
    doi_m: float | None = None,
    min_levels: int = 2,
) -> LayeredModel:
    """Fit 1…``max_layers`` constant layers joined by ramps to a log-ρ profile; pick by BIC.

    Each interface is a ramp (possibly of zero width) between two constant layers: its
    depth is the steepest step of the profile inside the ramp, and its range is the ramp
    (a gradational boundary) widened to the depths within one standard error (Δχ² ≤ 1).

    Args:
        tops: Depth of the top of each level, m, increasing.
        thicknesses: Thickness of each level, m (its weight in the fit).
        log10_rho: log10 resistivity of each level.
        max_layers: Most layers tried.
        floor_decades: Resolution floor ``s`` of the misfit (see the module).
        doi_m: Depth of investigation (default: the base of the last level).
        min_levels: Fewest levels a layer spans (default 2: one level alone, often the
            last above the DOI, is not a layer).

    Returns:
        The layered model.

    Raises:
        ValueError: Fewer than two levels, mismatched lengths or non-increasing tops.
    """
    n = len(tops)
    if n < 2 or len(thicknesses) != n or len(log10_rho) != n:
        raise ValueError(
            f"fit_layers needs ≥ 2 levels with one thickness and one value each, got "
            f"{n}, {len(thicknesses)}, {len(log10_rho)}"
        )
    if any(b <= a for a, b in zip(tops, tops[1:], strict=False)):
        raise ValueError("fit_layers: level tops must increase with depth")
    bottom = tops[-1] + thicknesses[-1]
    doi = bottom if doi_m is None else doi_m
    mean_w = sum(thicknesses) / n
    weights = [t / mean_w for t in thicknesses]
    cost = _segment_cost(log10_rho, weights)
    gap = _gap_cost(log10_rho, weights)
    floor2 = floor_decades**2
    fits = []
    bics = []
    for k in range(1, min(max_layers, (n + 1) // 2) + 1):
        rss, parts = _best_split(cost, gap, n, k, min(min_levels, n))
        if not math.isfinite(rss):
            break
        bic = n * math.log(max(rss / n, floor2)) + (3 * k - 2) * math.log(n)
        fits.append((rss, parts))
        bics.append(bic)
    k_best = min(range(len(bics)), key=lambda i: (round(bics[i], 9), i))
    rss, parts = fits[k_best]
    sigma2 = max(rss / n, floor2)

    def mean(i: int, j: int) -> float:
        w = sum(weights[i:j])
        return sum(weights[t] * log10_rho[t] for t in range(i, j)) / w

    layers = []
    for s, (_g, i, j) in enumerate(parts):
        last = s == len(parts) - 1
        bottom_m = None if last else tops[parts[s + 1][0]]
        layers.append(Layer(top_m=tops[i], bottom_m=bottom_m, rho=10 ** mean(i, j)))
    interfaces = []
    for s in range(1, len(parts)):
        g, i, _j = parts[s]
        lo = parts[s - 1][1]
        # steepest step between level g-1 (last of the layer above) and level i
        steps = [(abs(log10_rho[t] - log10_rho[t - 1]), t) for t in range(max(g, 1), i + 1)]
        at = max(steps)[1] if steps else i
        depth = tops[at]
        near = [
            tops[c]
            for c in range(lo + 1, parts[s][2])
            if (cost[lo][c] + cost[c][parts[s][2]] - cost[lo][at] - cost[at][parts[s][2]]) / sigma2
            <= 1.0
        ]
        interfaces.append(
            Interface(
                depth_m=depth,
                depth_min_m=min([tops[g], depth, *near]),
                depth_max_m=max([tops[i], depth, *near]),
                rho_above=layers[s - 1].rho,
                rho_below=layers[s].rho,
            )
        )
    layers = [
        Layer(
            top_m=interfaces[s - 1].depth_m if s else 0.0,
            bottom_m=interfaces[s].depth_m if s < len(interfaces) else None,
            rho=layer.rho,
        )
        for s, layer in enumerate(layers)
    ]
    layers, conductance, unresolved = equivalence(layers)
    return LayeredModel(
        layers=tuple(layers),
        interfaces=tuple(interfaces),
        bic=tuple(bics),
        doi_m=doi,
        conductance_s=conductance,
        unresolved=tuple(unresolved),
        floor_decades=floor_decades,
    )


def equivalence(layers: Sequence[Layer]) -> tuple[list[Layer], float | None, list[str]]:
    """What a layered model cannot resolve: a resistive basement under a conductor.

    When the deepest layer is at least :data:`BASEMENT_RATIO` times as resistive as the
    layer above, and that layer is a conductor (more conductive than the one above it, or
    the first), the current stays in the conductor: the basement's resistivity is only a
    lower bound, and the conductor is known by its conductance (thickness / resistivity)
    rather than by each of them.

    Args:
        layers: Top to bottom.

    Returns:
        The layers (the basement flagged :attr:`Layer.lower_bound`), the conductance (S)
        or ``None``, and the unresolved codes (``"below_doi"`` always).
    """
    out = list(layers)
    unresolved = ["below_doi"]
    conductance = None
    if len(out) >= 2 and out[-1].rho >= BASEMENT_RATIO * out[-2].rho:
        above = out[-2]
        if len(out) == 2 or out[-3].rho > above.rho:
            thickness = (above.bottom_m or above.top_m) - above.top_m
            conductance = thickness / above.rho
            out[-1] = dataclasses.replace(out[-1], lower_bound=True)
            unresolved += ["basement_lower_bound", "conductor_equivalence"]
    return out, conductance, unresolved


def layered_model(
    depth: Sequence[float],
    height: Sequence[float],
    rho: Sequence[float],
    doi_m: float,
    *,
    max_layers: int = 6,
    floor_decades: float = 0.04,
) -> LayeredModel:
    """The layered reading of a section's cells (laterally averaged, above the DOI).

    Cells are grouped into levels by depth (cells of a flat section share exact depths;
    on a section with topography, cell depths are binned to the median cell height); each
    level's value is the median log10 ρ of its cells.

    Args:
        depth: Cell centre depths below the surface, m.
        height: Cell heights, m.
        rho: Cell resistivities, Ω·m.
        doi_m: Depth of investigation, m: deeper cells are left out.
        max_layers: Most layers tried.
        floor_decades: Resolution floor (see :func:`fit_layers`).

    Returns:
        The layered model.

    Raises:
        ValueError: Fewer than two depth levels above the DOI.
    """
    step = statistics.median(height) if height else 1.0
    levels: dict[float, tuple[list[float], list[float]]] = {}
    for d, h, r in zip(depth, height, rho, strict=True):
        if d - h / 2 >= doi_m or r <= 0:
            continue
        key = round(d, 6) if len(set(depth)) <= 400 else round(d / step) * step
        vals, hs = levels.setdefault(key, ([], []))
        vals.append(math.log10(r))
        hs.append(h)
    keys = sorted(levels)
    if len(keys) < 2:
        raise ValueError(
            f"fewer than two depth levels above the depth of investigation ({doi_m} m)"
        )
    thick = [statistics.median(levels[k][1]) for k in keys]
    tops = [max(0.0, k - t / 2) for k, t in zip(keys, thick, strict=True)]
    values = [statistics.median(levels[k][0]) for k in keys]
    return fit_layers(
        tops, thick, values, max_layers=max_layers, floor_decades=floor_decades, doi_m=doi_m
    )
