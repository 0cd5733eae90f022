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

import dataclasses
import importlib
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from langchain_setraf.ert.model_section import InversionOptions, InversionProgress, ModelSection
from langchain_setraf.ert.survey import Survey

__all__ = [
    "InversionMesh",
    "InversionUnavailableError",
    "auto_nky",
    "build_mesh",
    "horizontal_electrodes",
    "invert_survey",
    "require_inversion_libraries",
    "require_simpeg",
]

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


def require_inversion_libraries() -> tuple[Any, Any]:
    """Import discretize and scipy (the ``invert`` extra), or say which extra to install.

    Returns:
        The ``discretize`` and ``scipy.sparse`` modules.

    Raises:
        InversionUnavailableError: One of them is missing.
    """
    try:
        discretize = importlib.import_module("discretize")
        sparse = importlib.import_module("scipy.sparse")
    except ImportError as exc:
        raise InversionUnavailableError(
            f"inversion needs discretize and scipy ({exc}); install the '{EXTRA}' extra: "
            f"pip install 'langchain-setraf[{EXTRA}]'"
        ) from exc
    return discretize, sparse


def _check_survey(survey: Survey) -> None:
    if not survey.data:
        raise ValueError(
            f"{survey.path}: no apparent-resistivity data to invert (format {survey.format!r} "
            "holds a model or a log, not four-electrode measurements)"
        )
    if len(survey.electrodes) < 4:
        raise ValueError(f"{survey.path}: at least 4 electrodes are needed to invert")
    xs = [x for x, _ in survey.electrodes]
    if len(set(xs)) != len(xs):
        raise ValueError(
            f"{survey.path}: two electrodes share a position along the line; the 2.5-D "
            "inversion needs one electrode per position"
        )
    for i, q in enumerate(survey.data, start=1):
        if q.k is None or not math.isfinite(q.k) or q.k == 0:
            raise ValueError(f"{survey.path}: datum {i} has no geometric factor")
        if (q.a is None and q.b is None) or (q.m is None and q.n is None):
            raise ValueError(f"{survey.path}: datum {i} has no local current or potential pair")
        if not math.isfinite(q.rhoa) or q.rhoa == 0:
            raise ValueError(f"{survey.path}: datum {i} has apparent resistivity {q.rhoa}")


def horizontal_electrodes(survey: Survey) -> list[tuple[float, float]]:
    """Electrode (x, z) with x a horizontal distance.

    A Res2DInv file may give x as distances *along the ground surface* (its topography flag
    2; the reader notes ``reader.surface_x``): on a slope, consecutive electrodes are then
    ``√(Δs² - Δz²)`` apart horizontally, not ``Δs``. Placing them at ``Δs`` stretches the
    line, and the mesh's electrodes are further apart than the cable's (22 % on a 35° slope).

    Returns:
        ``survey.electrodes``, with x converted to horizontal distances from the first
        electrode's when the survey notes surface distances and the line has relief.
    """
    surface_x = any(getattr(note, "key", "") == "reader.surface_x" for note in survey.notes)
    els = survey.electrodes
    if not surface_x or len({z for _, z in els}) < 2:
        return list(els)
    order = sorted(range(len(els)), key=lambda i: els[i][0])
    out = list(els)
    x_h = els[order[0]][0]
    for prev, cur in zip(order, order[1:], strict=False):
        ds = els[cur][0] - els[prev][0]
        dz = els[cur][1] - els[prev][1]
        # a drop steeper than the cable allows (bad elevations) keeps a tenth of the step
        x_h += math.sqrt(max(ds * ds - dz * dz, (0.1 * ds) ** 2))
        out[cur] = (x_h, els[cur][1])
    return out


def _spacing(survey: Survey) -> float:
    if survey.spacing:
        return survey.spacing
    xs = sorted({x for x, _ in survey.electrodes})
    steps = [b - a for a, b in zip(xs, xs[1:], strict=False) if b > a]
    return statistics.median(steps)


def auto_nky(span_m: float, spacing_m: float) -> int:
    """Wavenumbers for electrode distances from ``spacing_m`` to ``span_m``.

    The optimised quadrature of :func:`~langchain_setraf.ert.forward2d.wavenumbers` fits
    ``r·K₀`` to ~0.1 % with 5 points over a ratio of 30, and needs one more point per
    doubling of the ratio beyond that (at most 9): K_num then removes the rest.
    """
    ratio = max(span_m / spacing_m, 2.0)
    return int(min(9, max(5, 5 + math.ceil(math.log2(ratio / 30)) if ratio > 30 else 5)))


@dataclass(frozen=True)
class InversionMesh:
    """The mesh of an inversion and where the survey sits on it.

    Attributes:
        mesh: The ``discretize.TensorMesh`` (2-D, z up).
        active: Boolean per cell: ground (inverted) or air (fixed).
        electrodes: (x, z) of each electrode on its surface node, numpy array (n, 2).
        depth: Depth of every cell centre below the (local) surface, m.
        bins: Depth-bin edges for the depth of investigation, m.
        core_depth: Depth of the core mesh below the surface, m.
        x_min: First electrode along the line, m.
        x_max: Last electrode along the line, m.
        topography: Whether the electrodes have elevations (the mesh then follows them).
    """

    mesh: Any
    active: Any
    electrodes: Any
    depth: Any
    bins: Any
    core_depth: float
    x_min: float
    x_max: float
    topography: bool


def build_mesh(survey: Survey, opts: InversionOptions, discretize: Any) -> InversionMesh:
    """The inversion mesh of a survey: core cells of ``opts.cell_size``, padding, air above
    the surface the electrodes define, each electrode on the ground node under it.

    Raises:
        ValueError: The mesh would have more than 100,000 cells.
    """
    np = importlib.import_module("numpy")
    spacing = _spacing(survey)
    dx = opts.cell_size or spacing / 2
    ex = np.array([x for x, _ in survey.electrodes], dtype=float)
    ez = np.array([z for _, z in survey.electrodes], dtype=float)
    order = np.argsort(ex)
    x_min, x_max = float(ex.min()), float(ex.max())
    relief = float(ez.max() - ez.min())
    topography = relief > 0.01 * spacing
    core_depth = opts.depth_factor * max(q.pseudo_depth for q in survey.data)
    n_core_x = max(4, math.ceil((x_max - x_min + 2 * spacing) / dx))
    hx_core: Any = [(dx, n_core_x)]
    steps = np.diff(np.sort(ex))
    if np.any(np.abs(steps / dx - np.round(steps / dx)) > 1e-6):
        # electrodes off a regular grid (e.g. surface distances made horizontal): core cells
        # follow them, each gap split into equal cells of at most dx, so every electrode
        # stays on a node instead of moving to the nearest one
        margin = math.ceil(spacing / dx)
        widths = [spacing / margin] * margin
        for gap in steps:
            k = max(1, math.ceil(gap / dx - 1e-9))
            widths += [float(gap) / k] * k
        widths += [spacing / margin] * margin
        hx_core = widths
        n_core_x = len(widths)
    dz0 = dx / 2
    hz_relief = [dx] * (math.ceil(relief / dx) if topography else 0)
    hz_core: list[float] = []
    while sum(hz_core) < core_depth:
        hz_core.append(dz0 * _LAYER_GROWTH ** len(hz_core))
    n_cells = (n_core_x + 2 * _PAD_CELLS) * (len(hz_relief) + len(hz_core) + _PAD_CELLS)
    if n_cells > _MAX_CELLS:
        raise ValueError(
            f"{survey.path}: a cell size of {dx:g} m gives {n_cells} mesh cells (at most "
            f"{_MAX_CELLS}); choose a larger cell_size"
        )
    pad = [hz_core[-1] * _PAD_FACTOR**k for k in range(_PAD_CELLS, 0, -1)]
    hz = np.r_[pad, hz_core[::-1], hz_relief]
    mesh = discretize.TensorMesh(
        [[(dx, _PAD_CELLS, -_PAD_FACTOR), *hx_core, (dx, _PAD_CELLS, _PAD_FACTOR)], hz]
    )
    top = float(ez.max()) if topography else 0.0
    x0 = x_min - spacing - float(np.sum(mesh.h[0][:_PAD_CELLS]))
    mesh.origin = np.r_[x0, top - float(np.sum(hz))]

    def surface(x: Any) -> Any:
        if not topography:
            return np.zeros_like(x)
        return np.interp(x, ex[order], ez[order])

    cc = mesh.cell_centers
    depth = surface(cc[:, 0]) - cc[:, 1]
    active = depth > 0
    # each electrode on the node at the top of the ground under it (the higher neighbour)
    nodes_x = mesh.nodes_x
    tops = np.full(mesh.shape_cells[0], -np.inf)
    grid = active.reshape(mesh.shape_cells, order="F")
    face_top = mesh.nodes_y[1:]
    for i in range(mesh.shape_cells[0]):
        ground = np.flatnonzero(grid[i])
        if ground.size:
            tops[i] = face_top[ground.max()]
    el = np.empty((len(ex), 2))
    for j, x in enumerate(ex):
        i_node = int(np.argmin(np.abs(nodes_x - x)))
        near = [tops[i] for i in (i_node - 1, i_node) if 0 <= i < len(tops)]
        el[j] = (nodes_x[i_node], max(near))
    bins = np.r_[0.0, np.cumsum(hz_core)]
    return InversionMesh(mesh, active, el, depth, bins, core_depth, x_min, x_max, topography)


def _gradient_pairs(mesh: Any, active: Any) -> tuple[Any, Any, Any, Any]:
    """Neighbour differences between active cells: (Dx, wx, Dz, wz) on active indices.

    ``D m`` is the difference of ln σ between neighbours; ``w`` is ``face length / centre
    distance``, so ``Σ w (D m)²`` approximates ``∫|∂m/∂x|² dA``.
    """
    np = importlib.import_module("numpy")
    sp = importlib.import_module("scipy.sparse")
    nx, nz = mesh.shape_cells
    index = np.full(mesh.n_cells, -1)
    index[active] = np.arange(int(active.sum()))
    grid = index.reshape((nx, nz), order="F")
    hx, hz = mesh.h
    out = []
    for axis in (0, 1):
        a = grid[:-1, :] if axis == 0 else grid[:, :-1]
        b = grid[1:, :] if axis == 0 else grid[:, 1:]
        ok = (a >= 0) & (b >= 0)
        ia, ib = a[ok], b[ok]
        rows = np.arange(len(ia))
        d = sp.csr_matrix(
            (np.r_[-np.ones(len(ia)), np.ones(len(ia))], (np.r_[rows, rows], np.r_[ia, ib])),
            shape=(len(ia), int(active.sum())),
        )
        ii, kk = np.nonzero(ok)
        if axis == 0:
            w = hz[kk] / ((hx[ii] + hx[ii + 1]) / 2)
        else:
            w = hx[ii] / ((hz[kk] + hz[kk + 1]) / 2)
        out += [d, w]
    return out[0], out[1], out[2], out[3]


def invert_survey(
    survey: Survey,
    *,
    options: InversionOptions | None = None,
    progress: Callable[[InversionProgress], None] | None = None,
) -> ModelSection:
    """Invert a survey's apparent resistivities into a model section.

    Args:
        survey: A survey with four-electrode data (from
            :func:`~langchain_setraf.ert.load_survey`); electrode elevations, where the file
            has them, give the surface of the mesh.
        options: Inversion settings (defaults: :class:`InversionOptions`).
        progress: Called after every iteration (e.g. to print or update a progress bar).

    Returns:
        The model section: cells under the spread with depths below the surface, coverage,
        depth of investigation, χ², RMS, iterations, the regularisation and solver used.

    Raises:
        InversionUnavailableError: discretize or scipy is missing (the ``invert`` extra).
        ValueError: The survey has no data or unusable quadrupoles, or the mesh is too fine.
    """
    opts = options or InversionOptions()
    _check_survey(survey)
    discretize, sp = require_inversion_libraries()
    np = importlib.import_module("numpy")
    from scipy.sparse.linalg import LinearOperator, cg  # type: ignore[import-untyped]

    from langchain_setraf.ert.forward2d import PoleForward, pick_solver
    from langchain_setraf.ert.layer_refine import LayerCells, refine_layers

    start = time.perf_counter()
    # the mesh takes horizontal distances; K_num (below) the file's own x, as its ρa did
    grid = build_mesh(
        dataclasses.replace(survey, electrodes=horizontal_electrodes(survey)), opts, discretize
    )
    mesh, active = grid.mesh, grid.active
    quads = []
    for q in survey.data:
        a, b, m, n = q.a, q.b, q.m, q.n
        if a is None:  # a remote electrode goes second; the sign is absorbed by K_num
            a, b = b, a
        if m is None:
            m, n = n, m
        if a is None or m is None:
            raise ValueError(f"{survey.path}: a datum has no local current or potential pair")
        quads.append((a, b, m, n))
    spacing = _spacing(survey)
    span = grid.x_max - grid.x_min
    nky = opts.nky or auto_nky(span, spacing)
    solver = pick_solver(opts.solver)
    workers = max(1, min(opts.workers or (os.cpu_count() or 1), 8))
    fw = PoleForward(mesh, active, grid.electrodes, quads, nky=nky, solver=solver, workers=workers)
    rhoa = np.array([q.rhoa for q in survey.data], dtype=float)
    rho0 = float(np.exp(np.median(np.log(np.abs(rhoa)))))
    n_act = int(active.sum())
    m0 = np.full(n_act, math.log(1 / rho0))
    if grid.topography:
        # K_num from a flat line of the same electrodes: it removes the discretisation
        # error, and the topography's effect stays in the data, where the mesh models it
        flat = dataclasses.replace(
            survey, electrodes=[(x, 0.0) for x, _ in survey.electrodes], spacing=spacing
        )
        flat_grid = build_mesh(flat, opts, discretize)
        flat_fw = PoleForward(
            flat_grid.mesh,
            flat_grid.active,
            flat_grid.electrodes,
            quads,
            nky=nky,
            solver=solver,
            workers=workers,
        )
        v_flat, _ = flat_fw.response(
            np.full(int(flat_grid.active.sum()), math.log(1 / rho0)), jacobian=False
        )
        k_num = rho0 / v_flat
    else:
        v_home, _ = fw.response(m0, jacobian=False)
        k_num = rho0 / v_home
    dobs = rhoa / k_num
    std = (opts.error_percent / 100 * np.abs(rhoa) + opts.error_floor) / np.abs(k_num)
    wd = 1 / std
    n_data = len(dobs)

    area = mesh.cell_volumes[active]
    dx_, wx, dz_, wz = _gradient_pairs(mesh, active)
    setup_s = time.perf_counter() - start

    volts, jac = fw.response(m0)
    wj = wd[:, None] * jac
    if opts.sensitivity_weighting:
        sens = np.sqrt(np.sum(wj**2, axis=0)) / area
        sens = np.maximum(sens / sens.max(), 1e-4)  # keeps the CG system well posed
    else:
        sens = np.ones(n_act)
    sx = (np.abs(dx_) @ sens) / 2
    sz = (np.abs(dz_) @ sens) / 2
    ref_area = float(np.median(area))
    blocky = opts.regularization == "blocky"
    irls_x = np.ones(len(wx))
    irls_z = np.ones(len(wz))

    def reg_matrix() -> Any:
        return (
            opts.alpha_s * sp.diags(area / ref_area * sens)
            + opts.alpha_x * (dx_.T @ sp.diags(wx * sx * irls_x) @ dx_)
            + opts.alpha_z * (dz_.T @ sp.diags(wz * sz * irls_z) @ dz_)
        ).tocsr()

    def misfit(v: Any) -> float:
        return float(np.sum((wd * (v - dobs)) ** 2))

    rmat = reg_matrix()
    rng = np.random.default_rng(0)
    probe = rng.standard_normal(n_act)
    beta = opts.beta0_ratio * float(np.sum((wj @ probe) ** 2) / (probe @ rmat @ probe))
    model = m0.copy()
    phi_d = misfit(volts)
    history: list[InversionProgress] = []
    stopped = "iterations"
    irls_started_at = 0
    eps = 0.0
    iteration = 0
    lo = math.log(1 / 1e6)
    hi = math.log(1 / 1e-2)
    for iteration in range(1, opts.max_iterations + 1):
        it_start = time.perf_counter()
        rmat = reg_matrix()
        resid = wd * (volts - dobs)
        grad = wj.T @ resid + beta * (rmat @ (model - m0))
        diag = np.sum(wj**2, axis=0) + beta * rmat.diagonal()

        def hess(v: Any, rmat: Any = rmat, wj: Any = wj, beta: float = beta) -> Any:
            return wj.T @ (wj @ v) + beta * (rmat @ v)

        op = LinearOperator((n_act, n_act), matvec=hess, dtype=float)
        pre = LinearOperator((n_act, n_act), matvec=lambda v, d=diag: v / d, dtype=float)
        step, _ = cg(op, -grad, rtol=1e-3, maxiter=opts.cg_iterations, M=pre)
        step *= min(1.0, 2.0 / max(float(np.abs(step).max()), 1e-12))  # ≤ e² per step
        phi_old = phi_d + beta * float((model - m0) @ rmat @ (model - m0))
        accepted = False
        for k in range(5):
            trial = np.clip(model + step / 2**k, lo, hi)
            v_trial, j_trial = fw.response(trial, jacobian=(k == 0))
            phi_new = misfit(v_trial) + beta * float((trial - m0) @ rmat @ (trial - m0))
            if phi_new < phi_old:
                accepted = True
                break
        if not accepted:
            stopped = "stalled"
            iteration -= 1
            break
        model, volts = trial, v_trial
        if j_trial is None:
            _, j_trial = fw.response(model)
        wj = wd[:, None] * j_trial
        phi_d = misfit(volts)
        chi2 = phi_d / n_data
        phase = "smooth"
        if blocky and (
            irls_started_at or chi2 <= 2 * opts.target_chi2 or iteration > opts.max_iterations // 2
        ):
            # IRLS (Ekblom, p = 1) on the differences of ln σ between neighbours: a jump costs
            # its size instead of its square, so boundaries come out sharp
            phase = "blocky"
            gx, gz = dx_ @ model, dz_ @ model
            if not irls_started_at:
                irls_started_at = iteration
                eps = float(np.percentile(np.abs(np.r_[gx, gz]), 95)) / 2
            else:
                eps = max(eps * 0.6, opts.irls_epsilon)
            irls_x = eps / np.sqrt(gx**2 + eps**2)
            irls_z = eps / np.sqrt(gz**2 + eps**2)
        elapsed = time.perf_counter() - start
        report = InversionProgress(
            iteration=iteration,
            max_iterations=opts.max_iterations,
            chi2=chi2,
            beta=beta,
            elapsed_s=elapsed,
            iteration_s=time.perf_counter() - it_start,
            phase=phase,
        )
        history.append(report)
        if progress is not None:
            progress(report)
        irls_done = not blocky or (
            irls_started_at and iteration - irls_started_at >= 3 and eps <= opts.irls_epsilon
        )
        if chi2 <= opts.target_chi2 and irls_done:
            stopped = "target"
            break
        if elapsed > opts.max_seconds:
            stopped = "time"
            break
        if phase == "blocky" and chi2 <= opts.target_chi2:
            # hold χ² near the target while the IRLS weights sharpen
            beta *= 2.0 if chi2 < opts.target_chi2 / 2 else 1.25
        elif chi2 > opts.target_chi2:
            beta /= opts.beta_cooling

    pred = volts
    chi2 = misfit(pred) / n_data
    rms = float(100 * np.sqrt(np.mean((pred / dobs - 1) ** 2)))
    cov_act = np.sqrt(np.sum(wj**2, axis=0)) / area
    rho_act = np.exp(-model)

    centres = mesh.cell_centers[active]
    depth_all = grid.depth[active]
    keep = (
        (centres[:, 0] >= grid.x_min)
        & (centres[:, 0] <= grid.x_max)
        & (depth_all <= grid.core_depth)
    )
    levels = np.digitize(depth_all[keep], grid.bins) - 1
    level_cov = []
    for lv in range(len(grid.bins) - 1):
        sel = cov_act[keep][levels == lv]
        level_cov.append(float(np.median(sel)) if sel.size else 0.0)
    ref = next((c for c in level_cov if c > 0), 1.0)
    doi = next(
        (float(grid.bins[i]) for i, c in enumerate(level_cov) if 0 < c / ref < opts.doi_coverage),
        float(grid.core_depth),
    )
    widths, heights = mesh.h_gridded[active, 0], mesh.h_gridded[active, 1]
    section = ModelSection(
        x=tuple(float(v) for v in centres[keep, 0]),
        depth=tuple(float(v) for v in depth_all[keep]),
        width=tuple(float(v) for v in widths[keep]),
        height=tuple(float(v) for v in heights[keep]),
        rho=tuple(float(v) for v in rho_act[keep]),
        coverage=tuple(float(v) for v in cov_act[keep] / ref),
        doi_m=doi,
        chi2=chi2,
        rms_percent=rms,
        iterations=iteration,
        stopped_by=stopped,
        rhoa_observed=tuple(float(v) for v in rhoa),
        rhoa_predicted=tuple(float(v) for v in pred * k_num),
        library=f"setraf pole-field (discretize {metadata.version('discretize')}, "
        f"scipy {metadata.version('scipy')})",
        options=opts,
        elapsed_s=time.perf_counter() - start,
        regularization=opts.regularization,
        solver=solver.name,
        solver_note=solver.note,
        nky=nky,
        mesh_cells=int(mesh.n_cells),
        setup_s=setup_s,
        history=tuple(history),
        elevation=tuple(float(v) for v in centres[keep, 1]) if grid.topography else (),
    )
    if not opts.refine_layers:
        return section
    try:
        image = section.layers()
    except ValueError:  # too few levels above the DOI: no layered reading to refine
        return section
    refine_start = time.perf_counter()
    cells = LayerCells(
        x=centres[:, 0],
        depth=depth_all,
        height=heights,
        x_ref=(grid.x_min + grid.x_max) / 2,
        x_min=grid.x_min,
        x_max=grid.x_max,
        max_depth=doi,
    )
    layering = refine_layers(
        fw.response,
        cells,
        dobs,
        std,
        image,
        image_chi2=chi2,
        min_thickness=float(grid.bins[1]) / 2,
        # the inversion's time budget covers the fit too (at least a minute for it)
        max_seconds=max(60.0, opts.max_seconds - (refine_start - start)),
    )
    now = time.perf_counter()
    return dataclasses.replace(
        section, layering=layering, refine_s=now - refine_start, elapsed_s=now - start
    )
