"""A layered model fitted to the data: the image's layers refined by Levenberg–Marquardt.

The layered reading of an inverted section (:mod:`~langchain_setraf.ert.layering`) fits
the *image*, whose boundaries are smeared over mesh cells and placed where the
regularisation puts them. Here the number of layers the image's BIC chose is kept, and
the model is refined against the *measured data* with the inversion's own forward operator
(:class:`~langchain_setraf.ert.forward2d.PoleForward`):

* parameters: ln σ of each layer and the depth of each interface, continuous (not snapped
  to cells): a cell the interface crosses gets the thickness-weighted mean of the two
  conductivities, so the response is smooth in the depth; in the dipping variant each
  interface is ``z = a + b·(x - x_ref)``;
* Jacobian: the chain rule through the cell Jacobian ``∂V/∂ln σ`` (one forward and
  Jacobian per trial step; most are accepted); a fit stops when an iteration lowers the
  misfit by less than 0.5 %;
* misfit: the inversion's error model; Levenberg–Marquardt steps with bounds (depths
  inside the investigated range, layers at least a tenth of a cell thick);
* uncertainty: the posterior covariance ``(JᵀWᵀWJ)⁻¹``, scaled by χ²/N when that
  exceeds 1, gives each parameter's standard deviation (and the conductance's);
* flat or dipping: when the flat fit leaves χ²/N above 1, the dipping variant starts
  from it and is kept when its BIC ``Φ + k·ln N`` is lower;
* the fit is kept only when its χ²/N is at most :data:`MAX_CHI2_RATIO` times
  ``max(image χ²/N, 1)``; otherwise the image's layering is returned with
  ``fallback="misfit"`` and a :class:`RefinementWarning` says why.

Needs numpy (the ``invert`` extra); :func:`~langchain_setraf.ert.invert.invert_survey`
calls it.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from langchain_setraf.ert.layering import Interface, Layer, LayeredModel, equivalence

__all__ = ["MAX_CHI2_RATIO", "LayerCells", "RefinementWarning", "refine_layers"]

#: The refined fit is kept when its χ²/N is at most this times ``max(image χ²/N, 1)``.
MAX_CHI2_RATIO = 2.0
_LOG_SIGMA_BOUNDS = (math.log(1e-6), math.log(1e2))

#: ``response(log_sigma, jacobian=...) -> (volts, jac)`` of the active cells.
Response = Callable[..., tuple[Any, Any]]


class RefinementWarning(UserWarning):
    """The layered fit of the data was not kept: the image's layering is used instead."""


@dataclass(frozen=True)
class LayerCells:
    """Where the active cells of the mesh sit, for the layered parametrisation.

    Attributes:
        x: Cell centre along the line, m.
        depth: Cell centre depth below the (local) surface, m.
        height: Cell height, m.
        x_ref: Where a dipping interface's depth ``a`` holds (the line's centre), m.
        x_min: First electrode, m: a dipping interface is flat beyond the line's ends.
        x_max: Last electrode, m.
        max_depth: The deepest an interface may go (the investigated depth), m.
    """

    x: np.ndarray
    depth: np.ndarray
    height: np.ndarray
    x_ref: float
    x_min: float
    x_max: float
    max_depth: float


@dataclass
class _Fit:
    params: np.ndarray
    phi: float
    jac: np.ndarray
    cov: np.ndarray
    iterations: int


class _Param:
    """The map ``p = (ln σ₁…ln σₙ, a₁…aₙ₋₁[, b₁…bₙ₋₁]) → ln σ`` per cell and its Jacobian."""

    def __init__(self, cells: LayerCells, n_layers: int, dipping: bool) -> None:
        self.cells = cells
        self.n = n_layers
        self.dipping = dipping
        self.top = cells.depth - cells.height / 2
        self.bottom = cells.depth + cells.height / 2
        self.dx = np.clip(cells.x, cells.x_min, cells.x_max) - cells.x_ref

    @property
    def size(self) -> int:
        return self.n + (self.n - 1) * (2 if self.dipping else 1)

    def split(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.n
        q, a = p[:n], p[n : 2 * n - 1]
        b = p[2 * n - 1 :] if self.dipping else np.zeros(n - 1)
        return q, a, b

    def interfaces(self, p: np.ndarray) -> np.ndarray:
        """Depth of each interface at each cell (interfaces × cells)."""
        _q, a, b = self.split(p)
        return np.asarray(a[:, None] + b[:, None] * self.dx[None, :])

    def log_sigma(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ln σ per cell, and ∂ln σ/∂p (cells × parameters)."""
        q, _a, _b = self.split(p)
        z = self.interfaces(p)
        n, h = self.n, self.cells.height
        upper = np.vstack([np.full(len(h), -np.inf), z])  # top of layer k
        lower = np.vstack([z, np.full(len(h), np.inf)])  # base of layer k
        frac = np.clip(np.minimum(self.bottom, lower) - np.maximum(self.top, upper), 0.0, None) / h
        frac /= np.maximum(frac.sum(axis=0), 1e-12)
        s_k = np.exp(q)
        sigma = s_k @ frac
        jac = np.zeros((len(h), self.size))
        jac[:, :n] = (frac * s_k[:, None]).T / sigma[:, None]
        inside = (z >= self.top) & (z < self.bottom)
        dz = np.where(inside, (s_k[:-1, None] - s_k[1:, None]) / h, 0.0) / sigma  # per depth
        jac[:, n : 2 * n - 1] = dz.T
        if self.dipping:
            jac[:, 2 * n - 1 :] = (dz * self.dx[None, :]).T
        return np.log(sigma), jac

    def clip(self, p: np.ndarray, min_thickness: float) -> np.ndarray:
        """Keep ln σ in range and the interfaces ordered, below the surface and above the
        deepest allowed depth along the whole line."""
        p = p.copy()
        n = self.n
        p[:n] = np.clip(p[:n], *_LOG_SIGMA_BOUNDS)
        if n == 1:
            return p
        z = self.interfaces(p)
        lo = min_thickness * np.arange(1, n)
        hi = self.cells.max_depth - min_thickness * np.arange(n - 1, 0, -1)
        for k in range(n - 1):
            zk = z[k]
            shift = 0.0
            floor = lo[k] if k == 0 else None
            if floor is not None and zk.min() < floor:
                shift = floor - zk.min()
            if zk.max() + shift > hi[k]:
                shift = hi[k] - zk.max()
            p[n + k] += shift
            z = self.interfaces(p)
            if k > 0:
                gap = float((z[k] - z[k - 1]).min())
                if gap < min_thickness:
                    p[n + k] += min_thickness - gap
                    z = self.interfaces(p)
        return p


def _fit(
    response: Response,
    param: _Param,
    p0: np.ndarray,
    dobs: np.ndarray,
    wd: np.ndarray,
    *,
    max_iterations: int,
    min_thickness: float,
    deadline: float,
) -> _Fit:
    def evaluate(p: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        ls, dls = param.log_sigma(p)
        volts, jcell = response(ls, jacobian=True)
        r = wd * (np.asarray(volts) - dobs)
        return float(r @ r), r, (wd[:, None] * np.asarray(jcell)) @ dls

    p = param.clip(p0, min_thickness)
    phi, r, jac = evaluate(p)
    lam = 1e-2
    iterations = 0
    for _ in range(max_iterations):
        if time.perf_counter() > deadline:
            break
        jtj = jac.T @ jac
        g = jac.T @ r
        d = np.maximum(np.diag(jtj), 1e-12 * max(float(np.diag(jtj).max()), 1e-30))
        accepted = False
        for _try in range(5):
            step = np.linalg.solve(jtj + lam * np.diag(d), -g)
            # a step moves ln σ by at most 1.5 and an interface by at most a third of
            # its depth: the linearisation holds no further
            limit = float(np.abs(step[: param.n]).max()) / 1.5
            if param.n > 1:
                move = np.abs(param.interfaces(step)).max(axis=1)
                room = np.maximum(param.interfaces(p).min(axis=1) / 3, min_thickness)
                limit = max(limit, float((move / room).max()))
            trial = param.clip(p + step / max(1.0, limit), min_thickness)
            # the Jacobian comes with the trial: most trials are accepted
            phi_t, r_t, jac_t = evaluate(trial)
            if phi_t < phi:
                accepted = True
                break
            lam *= 4.0
        if not accepted:
            break
        iterations += 1
        gain = (phi - phi_t) / phi
        p, phi, r, jac = trial, phi_t, r_t, jac_t
        lam = max(lam / 3.0, 1e-6)
        if gain < 5e-3:
            break
    return _Fit(p, phi, jac, np.linalg.pinv(jac.T @ jac), iterations)


def _model(
    fit: _Fit, param: _Param, start: LayeredModel, n_data: int, geometry: str
) -> LayeredModel:
    chi2 = fit.phi / n_data
    cov = fit.cov * max(1.0, chi2)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    n = param.n
    q, a, b = param.split(fit.params)
    rho = np.exp(-q)
    layers = []
    for k in range(n):
        top = float(a[k - 1]) if k else 0.0
        bottom = float(a[k]) if k < n - 1 else None
        layers.append(Layer(top, bottom, float(rho[k]), rho_sd_log=float(sd[k])))
    interfaces = []
    for k in range(n - 1):
        depth, d_sd = float(a[k]), float(sd[n + k])
        interfaces.append(
            Interface(
                depth_m=depth,
                depth_min_m=max(0.0, depth - d_sd),
                depth_max_m=depth + d_sd,
                rho_above=float(rho[k]),
                rho_below=float(rho[k + 1]),
                depth_sd_m=d_sd,
                slope=float(b[k]),
                slope_sd=float(sd[2 * n - 1 + k]) if param.dipping else None,
                x_ref_m=param.cells.x_ref,
            )
        )
    layers, conductance, unresolved = equivalence(layers)
    if layers[-1].lower_bound:
        # only a bound is claimed: the low end of the basement's one-σ range
        low = layers[-1].rho * math.exp(-float(sd[n - 1]))
        layers[-1] = dataclasses.replace(layers[-1], rho=low)
    conductance_sd = None
    if conductance is not None:
        # s = (a_k - a_{k-1})·σ_k of the conductor k = n - 2: linear propagation
        k = n - 2
        grad = np.zeros(param.size)
        thick = float(a[k] - (a[k - 1] if k else 0.0))
        sig = math.exp(float(q[k]))
        grad[k] = thick * sig
        grad[n + k] = sig
        if k:
            grad[n + k - 1] = -sig
        conductance_sd = float(math.sqrt(max(float(grad @ cov @ grad), 0.0)))
    return dataclasses.replace(
        start,
        layers=tuple(layers),
        interfaces=tuple(interfaces),
        conductance_s=conductance,
        conductance_sd_s=conductance_sd,
        unresolved=tuple(unresolved),
        source="data",
        geometry=geometry,
        chi2=chi2,
        fallback="",
        rejected_chi2=None,
    )


def refine_layers(
    response: Response,
    cells: LayerCells,
    dobs: np.ndarray,
    std: np.ndarray,
    start: LayeredModel,
    *,
    image_chi2: float,
    min_thickness: float,
    max_iterations: int = 8,
    dipping: bool = True,
    max_seconds: float = math.inf,
) -> LayeredModel:
    """Refine the image's layered reading against the data (see the module).

    Args:
        response: ``response(log_sigma, jacobian=...)`` of the active cells
            (:meth:`~langchain_setraf.ert.forward2d.PoleForward.response`).
        cells: The active cells' positions.
        dobs: The observed data, in the units ``response`` predicts.
        std: Their standard deviations (the inversion's error model), same units.
        start: The image's layered reading (:func:`~langchain_setraf.ert.layering.layered_model`):
            its number of layers is kept, its values start the fit.
        image_chi2: χ²/N of the inverted section, for the fall-back test.
        min_thickness: The thinnest a layer may get, m.
        max_iterations: Levenberg–Marquardt iterations of each fit at most.
        dipping: Also fit dipping interfaces and keep them when the BIC prefers them.
        max_seconds: No new iteration starts after this many seconds (the fit as it
            stands is then judged like any other).

    Returns:
        The refined model (``source="data"``), or ``start`` with ``fallback="misfit"``
        when the refined χ²/N exceeds :data:`MAX_CHI2_RATIO` × ``max(image_chi2, 1)``
        (a :class:`RefinementWarning` is then issued).
    """
    deadline = time.perf_counter() + max_seconds
    n = start.n_layers
    n_data = len(dobs)
    wd = 1.0 / np.asarray(std, dtype=float)
    dobs = np.asarray(dobs, dtype=float)
    p0 = np.r_[
        [-math.log(layer.rho) for layer in start.layers],
        [i.depth_m for i in start.interfaces],
    ]
    flat = _Param(cells, n, dipping=False)
    fit = _fit(
        response,
        flat,
        p0,
        dobs,
        wd,
        max_iterations=max_iterations,
        min_thickness=min_thickness,
        deadline=deadline,
    )
    best, best_param, geometry = fit, flat, "flat"
    if dipping and n >= 2 and fit.phi > n_data:
        # flat interfaces leave more misfit than the errors explain: try a dip
        dip = _Param(cells, n, dipping=True)
        fit_d = _fit(
            response,
            dip,
            np.r_[fit.params, np.zeros(n - 1)],
            dobs,
            wd,
            max_iterations=max(2, max_iterations // 2),
            min_thickness=min_thickness,
            deadline=deadline,
        )
        log_n = math.log(n_data)
        if fit_d.phi + dip.size * log_n < fit.phi + flat.size * log_n:
            best, best_param, geometry = fit_d, dip, "dipping"
    chi2 = best.phi / n_data
    if chi2 > MAX_CHI2_RATIO * max(image_chi2, 1.0):
        warnings.warn(
            f"the layered fit of the data has χ²/N {chi2:.3g}, more than {MAX_CHI2_RATIO:g} "
            f"times the inverted section's ({image_chi2:.3g}): the ground is not layered "
            "enough for it; the units come from the section instead",
            RefinementWarning,
            stacklevel=2,
        )
        return dataclasses.replace(start, fallback="misfit", rejected_chi2=chi2)
    return _model(best, best_param, start, n_data, geometry)
