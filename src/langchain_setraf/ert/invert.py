"""Invert apparent-resistivity data into a model section with SimPEG (2.5-D DC, nodal).

Needs the ``invert`` extra (``pip install 'langchain-setraf[invert]'``: SimPEG and
discretize); the import is lazy, so the rest of the package works without it.

Method (see :class:`~langchain_setraf.ert.model_section.InversionOptions` for the defaults):

* mesh: a tensor mesh, core cells of ``cell_size`` (half the electrode spacing) across the
  spread, layers from ``cell_size/2`` thickening by 8 % down to ``depth_factor`` × the
  deepest Edwards median depth, 8 padding cells (×1.4) on each side and below;
* forward model: ``Simulation2DNodal`` (2.5-D, ``nky`` wavenumbers); the data are fitted as
  ρa = K_num·V, with K_num the numerical geometric factor of a homogeneous half-space on the
  same mesh, which cancels most of the discretisation error;
* misfit: least squares, standard deviation ``error_percent``·|ρa| + ``error_floor``;
* model: log-conductivity, smooth (``WeightedLeastSquares``: smallness ``alpha_s`` towards
  the homogeneous start model, smoothness ``alpha_x``/``alpha_z``), sensitivity weighting,
  β from the eigenvalue ratio then cooled, stop at χ²/N ≤ ``target_chi2``;
* depth of investigation: from the final data-weighted coverage (see
  :attr:`~langchain_setraf.ert.model_section.ModelSection.coverage`).

SimPEG prints an iteration table on stdout; it is swallowed while the inversion runs
(``contextlib.redirect_stdout``, process-wide), and the ``progress`` callback reports each
iteration instead.

Example:
    >>> from langchain_setraf.ert import load_survey
    >>> from langchain_setraf.ert.invert import invert_survey
    >>> section = invert_survey(load_survey("examples/two_layer_wenner.dat"))  # doctest: +SKIP
    >>> section.doi_m > 6  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import statistics
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

from langchain_setraf.ert.model_section import InversionOptions, InversionProgress, ModelSection
from langchain_setraf.ert.survey import Survey

__all__ = ["InversionUnavailableError", "invert_survey", "require_simpeg"]

EXTRA = "invert"
_PAD_CELLS = 8
_PAD_FACTOR = 1.4
_LAYER_GROWTH = 1.08
_MAX_CELLS = 100_000


class InversionUnavailableError(ImportError):
    """The inversion library (the ``invert`` extra) is not installed."""


def require_simpeg() -> tuple[Any, Any]:
    """Import SimPEG and discretize, or say which extra to install.

    Returns:
        The ``simpeg`` and ``discretize`` modules.

    Raises:
        InversionUnavailableError: One of them is missing.
    """
    try:
        simpeg = importlib.import_module("simpeg")
        discretize = importlib.import_module("discretize")
    except ImportError as exc:
        raise InversionUnavailableError(
            f"inversion needs SimPEG ({exc}); install the '{EXTRA}' extra: "
            f"pip install 'langchain-setraf[{EXTRA}]'"
        ) from exc
    return simpeg, discretize


def _check_survey(survey: Survey) -> None:
    if not survey.data:
        raise ValueError(
            f"{survey.path}: no apparent-resistivity data to invert (format {survey.format!r} "
            "holds a model or a log, not four-electrode measurements)"
        )
    if len(survey.electrodes) < 4:
        raise ValueError(f"{survey.path}: at least 4 electrodes are needed to invert")
    elevations = [z for _, z in survey.electrodes]
    spacing = _spacing(survey)
    if max(elevations) - min(elevations) > 0.01 * spacing:
        raise ValueError(
            f"{survey.path}: electrodes have topography (elevations "
            f"{min(elevations):g}–{max(elevations):g} m); the inversion handles flat lines only"
        )
    for i, q in enumerate(survey.data, start=1):
        if q.k is None or not math.isfinite(q.k) or q.k == 0:
            raise ValueError(f"{survey.path}: datum {i} has no geometric factor")
        if (q.a is None and q.b is None) or (q.m is None and q.n is None):
            raise ValueError(f"{survey.path}: datum {i} has no local current or potential pair")


def _spacing(survey: Survey) -> float:
    if survey.spacing:
        return survey.spacing
    xs = sorted({x for x, _ in survey.electrodes})
    steps = [b - a for a, b in zip(xs, xs[1:], strict=False) if b > a]
    return statistics.median(steps)


def invert_survey(
    survey: Survey,
    *,
    options: InversionOptions | None = None,
    progress: Callable[[InversionProgress], None] | None = None,
) -> ModelSection:
    """Invert a survey's apparent resistivities into a model section.

    Args:
        survey: A survey with four-electrode data (from
            :func:`~langchain_setraf.ert.load_survey`), on a flat line.
        options: Inversion settings (defaults: :class:`InversionOptions`).
        progress: Called after every iteration (e.g. to print or update a progress bar).

    Returns:
        The model section: cells under the spread with true depths, coverage, depth of
        investigation, χ², RMS and the iteration count.

    Raises:
        InversionUnavailableError: SimPEG is not installed (the ``invert`` extra).
        ValueError: The survey has no data, topography, or unusable quadrupoles.
    """
    opts = options or InversionOptions()
    _check_survey(survey)
    _, discretize = require_simpeg()
    np = importlib.import_module("numpy")
    from simpeg import data as sdata  # type: ignore[import-untyped]
    from simpeg import (
        data_misfit,
        directives,
        inverse_problem,
        inversion,
        maps,
        optimization,
        regularization,
    )
    from simpeg.electromagnetics.static import resistivity as dc  # type: ignore[import-untyped]

    start = time.perf_counter()
    spacing = _spacing(survey)
    dx = opts.cell_size or spacing / 2
    ex = [x for x, _ in survey.electrodes]
    x_min, x_max = min(ex), max(ex)
    core_depth = opts.depth_factor * max(q.pseudo_depth for q in survey.data)

    n_core_x = max(4, math.ceil((x_max - x_min + 2 * spacing) / dx))
    hz_core: list[float] = []
    while sum(hz_core) < core_depth:
        hz_core.append(dx / 2 * _LAYER_GROWTH ** len(hz_core))
    n_cells = (n_core_x + 2 * _PAD_CELLS) * (len(hz_core) + _PAD_CELLS)
    if n_cells > _MAX_CELLS:
        raise ValueError(
            f"{survey.path}: a cell size of {dx:g} m gives {n_cells} mesh cells (at most "
            f"{_MAX_CELLS}); choose a larger cell_size"
        )
    pad = [hz_core[-1] * _PAD_FACTOR**k for k in range(_PAD_CELLS, 0, -1)]
    hz = np.r_[pad, hz_core[::-1]]
    mesh = discretize.TensorMesh(
        [[(dx, _PAD_CELLS, -_PAD_FACTOR), (dx, n_core_x), (dx, _PAD_CELLS, _PAD_FACTOR)], hz]
    )
    x0 = x_min - spacing - float(np.sum(mesh.h[0][:_PAD_CELLS]))
    mesh.origin = np.r_[x0, -float(np.sum(hz))]

    def loc(i: int) -> Any:
        return np.r_[ex[i], 0.0]

    sources = []
    for q in survey.data:
        a, b, m, n = q.a, q.b, q.m, q.n
        # a remote electrode goes second; the sign this may flip is absorbed by K_num
        if a is None:
            a, b = b, a
        if m is None:
            m, n = n, m
        if a is None or m is None:
            raise ValueError(f"{survey.path}: a datum has no local current or potential pair")
        rx = (
            dc.receivers.Dipole(loc(m)[None, :], loc(n)[None, :])
            if n is not None
            else dc.receivers.Pole(loc(m)[None, :])
        )
        src = (
            dc.sources.Dipole([rx], loc(a), loc(b))
            if b is not None
            else dc.sources.Pole([rx], loc(a))
        )
        sources.append(src)
    dc_survey = dc.Survey(sources)
    rhoa = np.array([q.rhoa for q in survey.data], dtype=float)

    pymatsolver = importlib.import_module("pymatsolver")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"simpeg\..*|pymatsolver\..*|discretize\..*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        sim = dc.Simulation2DNodal(
            mesh,
            survey=dc_survey,
            sigmaMap=maps.ExpMap(mesh),
            nky=opts.nky,
            storeJ=True,
            solver=pymatsolver.SolverLU,
        )
        rho0 = float(np.exp(np.median(np.log(np.abs(rhoa)))))
        m0 = np.full(mesh.n_cells, math.log(1 / rho0))
        k_num = rho0 / sim.dpred(m0)
        sim._Jmatrix = None  # the start model's J is recomputed by the inversion
        sim._gtgdiag = None
        dobs = rhoa / k_num
        std = (opts.error_percent / 100 * np.abs(rhoa) + opts.error_floor) / np.abs(k_num)
        data = sdata.Data(dc_survey, dobs=dobs, standard_deviation=std)
        dmis = data_misfit.L2DataMisfit(data=data, simulation=sim)
        reg = regularization.WeightedLeastSquares(
            mesh,
            alpha_s=opts.alpha_s,
            alpha_x=opts.alpha_x,
            alpha_y=opts.alpha_z,
            reference_model=m0,
        )
        opt = optimization.InexactGaussNewton(maxIter=opts.max_iterations, cg_maxiter=30)
        prob = inverse_problem.BaseInvProblem(dmis, reg, opt)
        n_data = len(dobs)
        stopped = {"by": "iterations"}

        class _Report(directives.InversionDirective):  # type: ignore[misc]
            def endIter(self) -> None:
                chi2 = float(self.invProb.phi_d) / n_data
                elapsed = time.perf_counter() - start
                if chi2 <= opts.target_chi2:
                    stopped["by"] = "target"
                    self.opt.stopNextIteration = True
                elif elapsed > opts.max_seconds:
                    stopped["by"] = "time"
                    self.opt.stopNextIteration = True
                if progress is not None:
                    progress(
                        InversionProgress(
                            iteration=int(self.opt.iter),
                            max_iterations=opts.max_iterations,
                            chi2=chi2,
                            beta=float(self.invProb.beta),
                            elapsed_s=elapsed,
                        )
                    )

        directive_list = [
            *(
                [directives.UpdateSensitivityWeights(every_iteration=False)]
                if opts.sensitivity_weighting
                else []
            ),
            directives.BetaEstimate_ByEig(beta0_ratio=opts.beta0_ratio, random_seed=0),
            directives.BetaSchedule(coolingFactor=opts.beta_cooling, coolingRate=1),
            directives.UpdatePreconditioner(),
            _Report(),
        ]
        inv = inversion.BaseInversion(prob, directiveList=directive_list)
        with contextlib.redirect_stdout(io.StringIO()):  # SimPEG prints its iteration table
            m_rec = inv.run(m0)
        dpred = sim.dpred(m_rec)
        jac = sim.getJ(m_rec)
    chi2 = float(np.sum(((dpred - dobs) / std) ** 2) / n_data)
    rms = float(100 * np.sqrt(np.mean((dpred / dobs - 1) ** 2)))
    cov_all = np.sqrt(np.sum((jac / std[:, None]) ** 2, axis=0)) / mesh.cell_volumes
    rho_all = np.exp(-m_rec)

    centres = mesh.cell_centers
    depth_all = -centres[:, 1]
    keep = (centres[:, 0] >= x_min) & (centres[:, 0] <= x_max) & (depth_all <= core_depth)
    depths = np.round(depth_all[keep], 6)
    levels = np.unique(depths)
    level_cov = [float(np.median(cov_all[keep][depths == lv])) for lv in levels]
    ref = level_cov[0] if level_cov and level_cov[0] > 0 else 1.0
    doi = next(
        (float(lv) for lv, c in zip(levels, level_cov, strict=True) if c / ref < opts.doi_coverage),
        float(core_depth),
    )
    widths, heights = mesh.h_gridded[:, 0], mesh.h_gridded[:, 1]
    return ModelSection(
        x=tuple(float(v) for v in centres[keep, 0]),
        depth=tuple(float(v) for v in depth_all[keep]),
        width=tuple(float(v) for v in widths[keep]),
        height=tuple(float(v) for v in heights[keep]),
        rho=tuple(float(v) for v in rho_all[keep]),
        coverage=tuple(float(v) for v in cov_all[keep] / ref),
        doi_m=doi,
        chi2=chi2,
        rms_percent=rms,
        iterations=int(opt.iter),
        stopped_by=stopped["by"],
        rhoa_observed=tuple(float(v) for v in rhoa),
        rhoa_predicted=tuple(float(v) for v in dpred * k_num),
        library=f"simpeg {metadata.version('simpeg')}",
        options=opts,
        elapsed_s=time.perf_counter() - start,
    )
