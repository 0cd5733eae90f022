"""Direct sparse solvers of the inversion: parity with SuperLU, the choice, and its errors.

Every solver importable in the running environment is checked against SuperLU (always
there): the forward response and Jacobian of the 189-datum three-layer line, in one thread
and in two (the wavenumbers are solved concurrently), and one Gauss–Newton iteration of
the bundled two-layer line. Pardiso and MUMPS need packages that have no Linux wheel for
every Python (``docs/ert.md``, "Direct solvers"): their checks skip with the recipe where
they are absent.
"""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from langchain_setraf.ert import load_survey
from langchain_setraf.ert.cli import add_inversion_arguments, inversion_options
from langchain_setraf.ert.model_section import SOLVERS, InversionOptions

pytest.importorskip("discretize", reason="the inversion needs the 'invert' extra")

from langchain_setraf.ert.solvers import (
    SolverUnavailableError,
    available_solvers,
    pick_solver,
)

ROOT = Path(__file__).resolve().parents[1]
THREE_LAYER = ROOT / "examples" / "synthetic" / "three_layer.dat"
TWO_LAYER = ROOT / "examples" / "two_layer_wenner.dat"

RECIPES = {
    "pardiso": "pydiso is not installed: pip install mkl-devel, then "
    "PKG_CONFIG_PATH=$VIRTUAL_ENV/lib/pkgconfig pip install pydiso (docs/ert.md)",
    "mumps": "python-mumps is not installed: apt-get install libmumps-seq-dev, then "
    "pip install python-mumps (docs/ert.md)",
}


def _require(name: str) -> None:
    if name not in available_solvers():
        pytest.skip(RECIPES[name])


@cache
def _forward(name: str, workers: int) -> tuple[Any, Any]:
    """Response and Jacobian of the three-layer line for a random model, by one solver."""
    import discretize
    import numpy as np

    from langchain_setraf.ert.forward2d import PoleForward
    from langchain_setraf.ert.invert import build_mesh

    survey = load_survey(THREE_LAYER)
    grid = build_mesh(survey, InversionOptions(), discretize)
    quads = [(q.a, q.b, q.m, q.n) for q in survey.data]
    assert all(a is not None and m is not None for a, _, m, _ in quads)
    fw = PoleForward(
        grid.mesh,
        grid.active,
        grid.electrodes,
        quads,  # type: ignore[arg-type]
        nky=5,
        solver=pick_solver(name),  # type: ignore[arg-type]
        workers=workers,
    )
    rng = np.random.default_rng(3)
    log_sigma = np.log(1 / 100) + 0.7 * rng.standard_normal(int(grid.active.sum()))
    return fw.response(log_sigma)


def _relative(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# -- parity with SuperLU ---------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", ["pardiso", "mumps"])
def test_forward_response_and_jacobian_equal_superlus(name: str, workers: int) -> None:
    """Potentials and Jacobian to 1e-8 relative, with the wavenumbers solved in one thread
    and in two (sequential MUMPS keeps global state: two factorisations at once abort the
    process unless the solver serialises them)."""
    _require(name)
    volts, jac = _forward(name, workers)
    ref_volts, ref_jac = _forward("superlu", 1)
    assert volts.shape == ref_volts.shape and jac.shape == ref_jac.shape
    assert _relative(volts, ref_volts) < 1e-8
    assert _relative(jac, ref_jac) < 1e-8


@pytest.mark.parametrize("name", ["superlu", "pardiso", "mumps"])
def test_solves_of_matrices_sharing_a_pattern_and_of_another_are_exact(name: str) -> None:
    """``solve`` (Pardiso: reusing the analysis of an earlier matrix with the same pattern)
    and ``factor`` give ``A x = b`` for matrices of one pattern in turn, then of another."""
    import numpy as np
    import scipy.sparse as sp

    if name != "superlu":
        _require(name)
    solver = pick_solver(name)  # type: ignore[arg-type]
    rng = np.random.default_rng(5)

    def laplacian(n: int, shift: float) -> Any:
        d = sp.diags([-np.ones(n - 1), -np.ones(n - 1)], [-1, 1])
        return (sp.kronsum(d, d) + sp.diags(4 + shift + rng.random(n * n))).tocsr()

    for n, shift in ((20, 0.1), (20, 5.0), (20, 0.01), (13, 1.0), (20, 2.0)):
        a = laplacian(n, shift)
        b = rng.standard_normal((n * n, 3))
        x = solver.solve(a, b)
        assert x.shape == b.shape
        assert float(np.abs(a @ x - b).max()) < 1e-10 * float(np.abs(b).max())
        y = np.asarray(solver.factor(a)(b))
        assert float(np.abs(a @ y - b).max()) < 1e-10 * float(np.abs(b).max())


def test_superlu_in_two_threads_equals_one() -> None:
    volts, jac = _forward("superlu", 2)
    ref_volts, ref_jac = _forward("superlu", 1)
    assert _relative(volts, ref_volts) < 1e-12
    assert _relative(jac, ref_jac) < 1e-12


@cache
def _one_iteration(name: str) -> Any:
    from langchain_setraf.ert.invert import invert_survey

    options = InversionOptions(solver=name, max_iterations=1)  # type: ignore[arg-type]
    return invert_survey(load_survey(TWO_LAYER), options=options)


@pytest.mark.parametrize("name", ["pardiso", "mumps"])
def test_an_inversion_gives_superlus_model(name: str) -> None:
    """One Gauss–Newton iteration: the same model to 1e-6 in ln ρ, and the solver named.

    (Over more iterations, rounding differences of 1e-15 grow through the
    conjugate-gradient steps to the inversion's own tolerance, ~1e-3: SuperLU differs as
    much from itself under numpy 1 and numpy 2.)"""
    import numpy as np

    _require(name)
    section, ref = _one_iteration(name), _one_iteration("superlu")
    assert (section.solver, section.solver_note) == (name, "")
    assert section.iterations == ref.iterations == 1
    assert len(section.rho) == len(ref.rho)
    diff = np.abs(np.log(section.rho) - np.log(ref.rho))
    assert float(diff.max()) < 1e-6
    assert abs(section.chi2 - ref.chi2) <= 1e-6 * ref.chi2


# -- the choice ------------------------------------------------------------------------------
def test_auto_takes_the_fastest_installed_and_names_the_missing_one() -> None:
    installed = available_solvers()
    assert installed[-1] == "superlu"
    assert set(installed) <= {"pardiso", "mumps", "superlu"}
    chosen = pick_solver("auto")
    assert chosen.name == installed[0]
    if chosen.name == "pardiso":
        assert chosen.note == ""
    else:
        assert "Pardiso (pydiso)" in chosen.note
    assert chosen.exclusive == (chosen.name == "mumps")
    assert pick_solver().name == chosen.name  # "auto" is the default


def test_superlu_by_name_has_no_note() -> None:
    solver = pick_solver("superlu")
    assert (solver.name, solver.note, solver.exclusive) == ("superlu", "", False)


@pytest.mark.parametrize(
    ("name", "module", "package"),
    [("pardiso", "pydiso.mkl_solver", "pydiso"), ("mumps", "mumps", "python-mumps")],
)
def test_a_named_solver_that_is_not_installed_is_an_error_naming_the_package(
    name: str, module: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked by name, a missing solver is refused (never a silent SuperLU); ``auto`` still
    works and says what it fell back from."""
    monkeypatch.setitem(sys.modules, module, None)  # `import` now raises ImportError
    with pytest.raises(SolverUnavailableError, match=f"needs the '{package}' package") as err:
        pick_solver(name)  # type: ignore[arg-type]
    assert "docs/ert.md" in str(err.value)
    assert isinstance(err.value, ImportError)
    assert name not in available_solvers()
    assert pick_solver("auto").name != name


def test_invert_survey_refuses_a_missing_solver_before_inverting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langchain_setraf.ert.invert import invert_survey

    monkeypatch.setitem(sys.modules, "mumps", None)
    progress: list[Any] = []
    with pytest.raises(SolverUnavailableError, match="python-mumps"):
        invert_survey(
            load_survey(TWO_LAYER),
            options=InversionOptions(solver="mumps"),
            progress=progress.append,
        )
    assert progress == []


def test_an_unknown_solver_is_refused() -> None:
    with pytest.raises(ValueError, match="solver must be one of auto, pardiso, mumps, superlu"):
        InversionOptions(solver="cholmod")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="solver must be one of"):
        pick_solver("cholmod")  # type: ignore[arg-type]


def test_cli_solver_flag() -> None:
    parser = argparse.ArgumentParser()
    add_inversion_arguments(parser)
    assert inversion_options(parser.parse_args(["--invert"])).solver == "auto"
    for name in SOLVERS:
        assert inversion_options(parser.parse_args(["--solver", name])).solver == name
    with pytest.raises(SystemExit):
        parser.parse_args(["--solver", "cholmod"])
