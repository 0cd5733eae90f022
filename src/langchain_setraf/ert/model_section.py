"""The result of an inversion: a model section with true depths and a depth of investigation.

Pure Python (no numpy), so summaries, reports and the Streamlit app can use it without the
``invert`` extra; :func:`~langchain_setraf.ert.invert.invert_survey` builds it.

Example:
    >>> opts = InversionOptions(error_percent=5.0)
    >>> opts.error_percent, opts.max_iterations
    (5.0, 10)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from langchain_setraf.ert.i18n import TEXTS, number
from langchain_setraf.ert.i18n import text as tr
from langchain_setraf.ert.layering import LayeredModel, layered_model
from langchain_setraf.ert.survey import Cell, Survey

__all__ = [
    "REGULARIZATIONS",
    "SOLVERS",
    "InversionOptions",
    "InversionProgress",
    "ModelSection",
    "SolverName",
]

#: The regularisations :class:`InversionOptions` accepts.
REGULARIZATIONS = ("smooth", "blocky")

#: A direct sparse solver choice: ``"auto"`` = the fastest installed.
SolverName = Literal["auto", "pardiso", "mumps", "superlu"]

#: The solvers :attr:`InversionOptions.solver` accepts, ``"auto"`` first.
SOLVERS: tuple[SolverName, ...] = ("auto", "pardiso", "mumps", "superlu")


@dataclass(frozen=True)
class InversionOptions:
    """Settings of a 2.5-D DC inversion (smooth or blocky), with documented defaults.

    Attributes:
        error_percent: Relative data error, % of |ρa| (default 3 %).
        error_floor: Absolute error floor, Ω·m of apparent resistivity (default 0.5 Ω·m);
            the standard deviation of datum i is ``error_percent/100·|ρa_i| + error_floor``.
        cell_size: Width of the core mesh cells, m; ``None`` = half the electrode spacing.
            The first layer is half as thick and layers thicken by 8 % downwards.
        depth_factor: The core mesh (and the returned section) reaches this multiple of the
            deepest Edwards median depth of the data (default 2).
        alpha_s: Weight of the smallness term (closeness to the homogeneous start model).
        alpha_x: Weight of horizontal smoothness.
        alpha_z: Weight of vertical smoothness (default 0.1: layers may change faster with
            depth than along the line, as in most sediments).
        beta0_ratio: Initial trade-off β as a ratio of data-misfit to regularization
            curvature (SimPEG ``BetaEstimate_ByEig``).
        beta_cooling: β is divided by this factor after every iteration.
        max_iterations: Gauss–Newton iterations at most (the inversion stops earlier when
            χ² reaches ``target_chi2``).
        max_seconds: Wall-clock budget; the inversion stops after the iteration that
            exceeds it, and the layered fit of the data starts no iteration after what is
            left of it (at least 60 s).
        target_chi2: Target normalised misfit χ²/N (1 = fit the data to their errors).
        nky: Number of wavenumbers of the 2.5-D transform; ``None`` (default) sizes it to
            the ratio of the longest to the shortest electrode distance (5 to 9).
        sensitivity_weighting: Weight the regularization by the inverse sensitivity
            (SimPEG ``UpdateSensitivityWeights``), which lets deep cells change as readily
            as shallow ones.
        doi_coverage: A depth level is below the depth of investigation when the median
            data-weighted coverage of its cells under the electrodes falls below this
            fraction of the shallowest level's (default 0.003).
        regularization: ``"smooth"`` (least squares on the gradients of ln ρ: gradational
            boundaries) or ``"blocky"`` (the same until χ² nears the target, then
            iteratively reweighted least squares with p = 1 on the gradients: sharp
            boundaries where the data allow them).
        irls_epsilon: The smallest IRLS threshold on the difference of ln ρ between
            neighbouring cells (blocky only); smaller = sharper and slower to converge.
        cg_iterations: Conjugate-gradient iterations of each Gauss–Newton step at most.
        workers: Threads solving the wavenumbers in parallel; ``None`` = one per CPU (≤ 8).
        solver: The direct sparse solver: ``"auto"`` (default: Pardiso where ``pydiso`` is
            installed, else MUMPS where ``python-mumps`` is, else SuperLU), or one of
            ``"pardiso"``, ``"mumps"``, ``"superlu"``; a solver that is not installed is an
            error naming the package (see :func:`~langchain_setraf.ert.forward2d.pick_solver`).
        refine_layers: After the inversion, refine the section's layered reading against
            the data (:func:`~langchain_setraf.ert.layer_refine.refine_layers`: layer
            resistivities and continuous interface depths, flat or dipping, with their
            uncertainties); the units then come from that fit (default ``True``).
    """

    error_percent: float = 3.0
    error_floor: float = 0.5
    cell_size: float | None = None
    depth_factor: float = 2.0
    alpha_s: float = 1e-3
    alpha_x: float = 1.0
    alpha_z: float = 0.1
    beta0_ratio: float = 10.0
    beta_cooling: float = 2.0
    max_iterations: int = 10
    max_seconds: float = 600.0
    target_chi2: float = 1.0
    nky: int | None = None
    sensitivity_weighting: bool = True
    doi_coverage: float = 0.003
    regularization: str = "smooth"
    irls_epsilon: float = 0.02
    cg_iterations: int = 50
    workers: int | None = None
    solver: SolverName = "auto"
    refine_layers: bool = True

    def __post_init__(self) -> None:
        positive = {
            "error_floor": self.error_floor,
            "depth_factor": self.depth_factor,
            "alpha_x": self.alpha_x,
            "alpha_z": self.alpha_z,
            "beta0_ratio": self.beta0_ratio,
            "max_seconds": self.max_seconds,
            "target_chi2": self.target_chi2,
            "doi_coverage": self.doi_coverage,
            "irls_epsilon": self.irls_epsilon,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"InversionOptions.{name} must be a positive number, got {value}")
        if not (math.isfinite(self.error_percent) and self.error_percent >= 0):
            raise ValueError(
                f"InversionOptions.error_percent must be ≥ 0, got {self.error_percent}"
            )
        if not (math.isfinite(self.alpha_s) and self.alpha_s >= 0):
            raise ValueError(f"InversionOptions.alpha_s must be ≥ 0, got {self.alpha_s}")
        if self.cell_size is not None and not (
            math.isfinite(self.cell_size) and self.cell_size > 0
        ):
            raise ValueError(
                f"InversionOptions.cell_size must be a positive length in m, got {self.cell_size}"
            )
        if not (math.isfinite(self.beta_cooling) and self.beta_cooling >= 1):
            raise ValueError(f"InversionOptions.beta_cooling must be ≥ 1, got {self.beta_cooling}")
        if not 1 <= self.max_iterations <= 100:
            raise ValueError(
                f"InversionOptions.max_iterations must be in 1..100, got {self.max_iterations}"
            )
        if self.nky is not None and not 3 <= self.nky <= 31:
            raise ValueError(f"InversionOptions.nky must be in 3..31, got {self.nky}")
        if self.regularization not in REGULARIZATIONS:
            raise ValueError(
                f"InversionOptions.regularization must be one of {', '.join(REGULARIZATIONS)}, "
                f"got {self.regularization!r}"
            )
        if not 1 <= self.cg_iterations <= 1000:
            raise ValueError(
                f"InversionOptions.cg_iterations must be in 1..1000, got {self.cg_iterations}"
            )
        if self.workers is not None and not 1 <= self.workers <= 64:
            raise ValueError(f"InversionOptions.workers must be in 1..64, got {self.workers}")
        if self.solver not in SOLVERS:
            raise ValueError(
                f"InversionOptions.solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}"
            )
        if self.doi_coverage >= 1:
            raise ValueError(
                f"InversionOptions.doi_coverage must be below 1, got {self.doi_coverage}"
            )


@dataclass(frozen=True)
class InversionProgress:
    """One finished iteration, as reported to a progress callback.

    Attributes:
        iteration: 1-based number of the iteration just finished.
        max_iterations: The most iterations the inversion will do.
        chi2: χ²/N after this iteration.
        beta: The regularisation trade-off used.
        elapsed_s: Seconds since the inversion started (mesh and set-up included).
        iteration_s: Seconds this iteration took.
        phase: ``"smooth"``, or ``"blocky"`` once the IRLS reweighting runs.
    """

    iteration: int
    max_iterations: int
    chi2: float
    beta: float
    elapsed_s: float
    iteration_s: float = 0.0
    phase: str = "smooth"

    def __str__(self) -> str:
        return (
            f"iteration {self.iteration}/{self.max_iterations} ({self.phase}): "
            f"χ² {self.chi2:.2f}, β {self.beta:.3g}, {self.iteration_s:.1f} s "
            f"({self.elapsed_s:.1f} s in all)"
        )


@dataclass(frozen=True)
class ModelSection:
    """An inverted resistivity section (rectangular cells under the electrode spread).

    All per-cell tuples have the same length (one entry per cell).

    Attributes:
        x: Cell centre along the line, m.
        depth: Cell centre depth below the surface, m (positive down): a true depth.
        width: Cell width, m.
        height: Cell height, m.
        rho: Model resistivity, Ω·m.
        coverage: Data-weighted sensitivity ``√Σᵢ(Jᵢⱼ/σᵢ)²`` per unit area, normalised to the
            median of the shallowest level (1 near the surface, ≪ 1 where the data see
            little).
        doi_m: Depth of investigation, m: the shallowest level whose median coverage falls
            below :attr:`InversionOptions.doi_coverage` (the bottom of the section,
            ``depth_factor`` × the deepest pseudo-depth, when none does).
        chi2: Final normalised misfit χ²/N.
        rms_percent: Final relative RMS misfit of ρa, %.
        iterations: Gauss–Newton iterations done.
        stopped_by: ``"target"`` (χ² reached), ``"iterations"`` or ``"time"``.
        rhoa_observed: Observed ρa, Ω·m, one per datum used.
        rhoa_predicted: ρa the model predicts, Ω·m.
        library: The code and versions that inverted.
        options: The settings used.
        elapsed_s: Wall-clock time of the inversion, s.
        regularization: ``"smooth"`` or ``"blocky"`` (see
            :attr:`InversionOptions.regularization`).
        solver: The direct sparse solver used (``"pardiso"``, ``"mumps"``, ``"superlu"``).
        solver_note: Names the faster solver that was not installed ("" when none).
        nky: Wavenumbers of the 2.5-D transform.
        mesh_cells: Cells of the whole mesh (padding and air included).
        setup_s: Seconds spent on the mesh, the operators and the start model.
        history: One :class:`InversionProgress` per iteration.
        elevation: Cell centre elevation, m, one per cell, when the line has topography
            (the mesh then follows the surface: ``depth`` is below the local surface);
            empty on a flat line.
        layering: The layered model the units come from, made at inversion time: the
            section's layered reading refined against the data (``source == "data"``), or
            that reading itself with :attr:`LayeredModel.fallback` saying why the
            refinement was not kept; ``None`` when no refinement was asked for (then
            :meth:`units_model` reads the section).
        refine_s: Seconds the layered fit of the data took (included in
            :attr:`elapsed_s`).
    """

    x: tuple[float, ...]
    depth: tuple[float, ...]
    width: tuple[float, ...]
    height: tuple[float, ...]
    rho: tuple[float, ...]
    coverage: tuple[float, ...]
    doi_m: float
    chi2: float
    rms_percent: float
    iterations: int
    stopped_by: str
    rhoa_observed: tuple[float, ...]
    rhoa_predicted: tuple[float, ...]
    library: str
    options: InversionOptions = field(default_factory=InversionOptions)
    elapsed_s: float = 0.0
    regularization: str = "smooth"
    solver: str = ""
    solver_note: str = ""
    nky: int = 0
    mesh_cells: int = 0
    setup_s: float = 0.0
    history: tuple[InversionProgress, ...] = ()
    elevation: tuple[float, ...] = ()
    layering: LayeredModel | None = None
    refine_s: float = 0.0

    @property
    def seconds_per_iteration(self) -> float:
        """Mean wall-clock seconds of one Gauss–Newton iteration (0 when none ran)."""
        times = [h.iteration_s for h in self.history]
        return sum(times) / len(times) if times else 0.0

    @property
    def n_cells(self) -> int:
        return len(self.x)

    def layers(self, *, max_layers: int = 6, floor_decades: float = 0.04) -> LayeredModel:
        """The layered reading of this section (see :mod:`~langchain_setraf.ert.layering`).

        Raises:
            ValueError: Fewer than two depth levels above the depth of investigation.
        """
        return layered_model(
            self.depth,
            self.height,
            self.rho,
            self.doi_m,
            max_layers=max_layers,
            floor_decades=floor_decades,
        )

    def units_model(self) -> LayeredModel:
        """The layered model the units come from: :attr:`layering` when the inversion made
        one, else :meth:`layers` (the section's own layered reading).

        Raises:
            ValueError: Fewer than two depth levels above the depth of investigation.
        """
        return self.layering if self.layering is not None else self.layers()

    def cells(self) -> list[Cell]:
        """The section as :class:`Cell` objects (``sensitivity`` = coverage)."""
        return [
            Cell(x=x, depth=d, rho=r, sensitivity=c)
            for x, d, r, c in zip(self.x, self.depth, self.rho, self.coverage, strict=True)
        ]

    def to_survey(self, survey: Survey) -> Survey:
        """A copy of ``survey`` whose cells are this model (true depths, model ρ).

        The measured data, electrodes and notes are kept; ``depth_kind`` becomes
        ``"model"``, ``value_kind`` ``"resistivity"`` and ``rms_percent`` the final RMS.
        """
        return dataclasses.replace(
            survey,
            cells=self.cells(),
            depth_kind="model",
            value_kind="resistivity",
            rms_percent=round(self.rms_percent, 2),
            notes=list(survey.notes),
        )

    def describe(self, language: str = "en") -> str:
        """One line, in ``language`` (``"en"`` or ``"fr"``): method, library, misfit,
        iterations, DOI."""
        key = f"model.stopped_by.{self.stopped_by}"
        stopped = tr(language, key) if key in TEXTS["en"] else self.stopped_by
        return tr(
            language,
            "model.describe",
            method=self.method_name(language),
            library=self.library,
            chi2=number(self.chi2, ".2f", language),
            rms=number(self.rms_percent, ".2f", language),
            iterations=self.iterations,
            stopped_by=stopped,
            doi=number(self.doi_m, ".3g", language),
        )

    def method_name(self, language: str = "en") -> str:
        """The regularisation as the report names it, in ``language``: ``"smooth"`` /
        ``"lissée"``, ``"blocky (IRLS)"`` / ``"par blocs (IRLS)"``."""
        key = f"model.method.{self.regularization}"
        return tr(language, key) if key in TEXTS["en"] else self.regularization
