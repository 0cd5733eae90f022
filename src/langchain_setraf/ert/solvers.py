"""Direct sparse solvers for the 2.5-D forward model: Pardiso, MUMPS or SuperLU.

The forward model factors one symmetric positive-definite matrix per wavenumber and solves
it for one right-hand side per electrode. Three direct solvers can do that:

* Pardiso (Intel MKL) through ``pydiso``;
* MUMPS (sequential) through ``python-mumps``;
* SuperLU through scipy, always there.

``pydiso`` and ``python-mumps`` publish no Linux wheel for every Python: both build from
their source distribution, against MKL from PyPI (``mkl-devel``) and against a system MUMPS
(Debian/Ubuntu ``libmumps-seq-dev``); ``docs/ert.md`` gives the recipes. The sequential
MUMPS library keeps state in Fortran module variables, so two factorisations must not run
at once: :meth:`Factoriser.solve` runs them one at a time (``exclusive``). Pardiso runs one
MKL thread per factorisation (set for the process when the solver is picked): the forward
model solves its wavenumbers in parallel threads already, and MKL's own threads on top of
them oversubscribe the cores.

Needs numpy and scipy (the ``invert`` extra); import it lazily.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

from langchain_setraf.ert.model_section import SOLVERS, SolverName

__all__ = [
    "SOLVER_PACKAGES",
    "Factoriser",
    "SolverUnavailableError",
    "available_solvers",
    "pick_solver",
]

#: The module each optional solver imports, and the package (as pip names it) that has it.
SOLVER_PACKAGES: dict[str, tuple[str, str]] = {
    "pardiso": ("pydiso.mkl_solver", "pydiso"),
    "mumps": ("mumps", "python-mumps"),
}

#: How each optional solver is installed where no wheel exists (the full recipe:
#: ``docs/ert.md``, "Direct solvers").
_RECIPES = {
    "pardiso": "pip install mkl-devel && PKG_CONFIG_PATH=$VIRTUAL_ENV/lib/pkgconfig "
    "pip install pydiso",
    "mumps": "apt-get install libmumps-seq-dev && pip install python-mumps",
}

#: The fastest first (``auto`` takes the first one installed).
_ORDER = ("pardiso", "mumps", "superlu")

_NOTES = {
    "mumps": "Pardiso (pydiso) is faster where installed",
    "superlu": "SuperLU (scipy) used: Pardiso (pydiso) or MUMPS (python-mumps) would be faster",
}

_EXCLUSIVE = threading.Lock()

#: Analysed Pardiso solvers kept for reuse (one per worker thread is enough).
_PARDISO_KEPT = 8


class SolverUnavailableError(ImportError):
    """The solver asked for by name is not installed (the message names the package)."""


@dataclass(frozen=True)
class Factoriser:
    """A direct sparse solver.

    Attributes:
        name: ``"pardiso"``, ``"mumps"`` or ``"superlu"``.
        factor: ``A -> solve``: factors a symmetric positive-definite sparse matrix and
            returns the function that solves it for a dense right-hand side (n or n × k).
        note: Names the faster solver that is not installed ("" when none is, or when the
            solver was chosen by name).
        exclusive: One factorisation at a time in the process (sequential MUMPS).
        factor_solve: ``(A, b) -> x`` in one step where the solver can do better than
            ``factor(A)(b)`` (Pardiso: reuses the symbolic analysis of an earlier matrix
            with the same sparsity pattern); ``None`` = ``factor(A)(b)``.
    """

    name: str
    factor: Callable[[Any], Callable[[Any], Any]]
    note: str = ""
    exclusive: bool = False
    factor_solve: Callable[[Any, Any], Any] | None = None

    def solve(self, a: Any, b: Any) -> np.ndarray:
        """Factor ``a`` and solve ``a x = b``; safe to call from several threads.

        Args:
            a: Sparse symmetric positive-definite matrix (n × n).
            b: Dense right-hand sides (n or n × k).

        Returns:
            ``x``, shaped like ``b``.
        """
        with _EXCLUSIVE if self.exclusive else nullcontext():
            if self.factor_solve is not None:
                return np.asarray(self.factor_solve(a, b))
            solve = self.factor(a)
            x = np.asarray(solve(b))
            del solve  # MUMPS frees its instance here, inside the lock
        return x


def _import(name: str) -> Any:
    """The solver's module, or :class:`SolverUnavailableError` naming what to install."""
    module, package = SOLVER_PACKAGES[name]
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:  # OSError: a shared library that does not load
        raise SolverUnavailableError(
            f"solver {name!r} needs the {package!r} package, which does not import here "
            f"({exc}); install it ({_RECIPES[name]}; see docs/ert.md, 'Direct solvers') "
            f"or choose solver='auto'"
        ) from exc


def available_solvers() -> tuple[str, ...]:
    """The solvers installed here, fastest first (``"superlu"`` always last)."""
    found = []
    for name in SOLVER_PACKAGES:
        try:
            _import(name)
        except SolverUnavailableError:
            continue
        found.append(name)
    return (*found, "superlu")


def _pardiso(module: Any, note: str) -> Factoriser:
    # one MKL thread per factorisation: the forward model already solves its wavenumbers
    # on every core, and MKL's threads on top of them oversubscribe the cores
    module.set_mkl_pardiso_threads(1)

    spd = "real_symmetric_positive_definite"

    def factor(a: Any) -> Callable[[Any], Any]:
        inv = module.MKLPardisoSolver(sp.csr_matrix(a), matrix_type=spd)
        return lambda b: inv.solve(np.asarray(b, dtype=float))

    # analysed solvers not in use, by sparsity pattern of the upper triangle: the ordering
    # and symbolic factorisation are ~80 % of a factorisation of the forward model's
    # matrices, and every wavenumber and iteration has the same pattern
    idle: list[tuple[Any, Any, Any]] = []
    lock = threading.Lock()

    def factor_solve(a: Any, b: Any) -> Any:
        upper = sp.triu(a, format="csr")
        upper.sum_duplicates()
        upper.sort_indices()
        inv = None
        with lock:
            for k, (indptr, indices, solver) in enumerate(idle):
                if np.array_equal(indptr, upper.indptr) and np.array_equal(indices, upper.indices):
                    inv = solver
                    del idle[k]
                    break
        if inv is None:
            inv = module.MKLPardisoSolver(upper, matrix_type=spd)
        else:
            inv.refactor(upper)
        x = inv.solve(np.asarray(b, dtype=float))
        with lock:
            idle.insert(0, (upper.indptr, upper.indices, inv))
            del idle[_PARDISO_KEPT:]
        return x

    return Factoriser("pardiso", factor, note, factor_solve=factor_solve)


def _mumps(module: Any, note: str) -> Factoriser:
    def factor(a: Any) -> Callable[[Any], Any]:
        ctx = module.Context()
        ctx.set_matrix(sp.coo_matrix(a), symmetric=True)
        ctx.factor(ordering="auto", pivot_tol=0.0)  # positive definite: no pivoting
        return lambda b: ctx.solve(np.asarray(b, dtype=float))

    return Factoriser("mumps", factor, note, exclusive=True)


def _superlu(note: str) -> Factoriser:
    from scipy.sparse.linalg import (  # type: ignore[import-untyped]
        splu,
        spsolve_triangular,
    )

    def factor(a: Any) -> Callable[[Any], Any]:
        # SuperLU factors; the two triangular solves of many right-hand sides are ~8x
        # faster through spsolve_triangular than through SuperLU.solve (scipy 1.17)
        lu = splu(sp.csc_matrix(a), permc_spec="MMD_AT_PLUS_A")
        lower, upper, perm_c = lu.L.tocsr(), lu.U.tocsr(), lu.perm_c
        n = len(lu.perm_r)
        p_r = sp.csr_matrix((np.ones(n), (lu.perm_r, np.arange(n))), shape=(n, n))

        def solve(b: Any) -> Any:
            y = spsolve_triangular(lower, p_r @ b, lower=True, unit_diagonal=True)
            return spsolve_triangular(upper, y, lower=False)[perm_c]

        return solve

    return Factoriser("superlu", factor, note)


def pick_solver(name: SolverName = "auto") -> Factoriser:
    """A direct solver by name, or with ``"auto"`` the fastest installed.

    Args:
        name: ``"auto"`` (Pardiso where ``pydiso`` imports, else MUMPS where
            ``python-mumps`` does, else SuperLU), ``"pardiso"``, ``"mumps"`` or
            ``"superlu"``.

    Returns:
        The solver; with ``"auto"``, :attr:`Factoriser.note` names the faster one missing.

    Raises:
        ValueError: ``name`` is not one of :data:`~langchain_setraf.ert.model_section.SOLVERS`.
        SolverUnavailableError: The named solver's package is not installed (the message
            names it and how to install it).
    """
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {name!r}")
    if name == "superlu":
        return _superlu("")
    if name != "auto":
        module = _import(name)
        return _pardiso(module, "") if name == "pardiso" else _mumps(module, "")
    for candidate in _ORDER[:-1]:
        try:
            module = _import(candidate)
        except SolverUnavailableError:
            continue
        note = _NOTES.get(candidate, "")
        return _pardiso(module, note) if candidate == "pardiso" else _mumps(module, note)
    return _superlu(_NOTES["superlu"])
