"""Direct-solver benchmark: the inversion with each solver installed, same cases, same run.

Cases: the bundled two-layer Wenner line (``examples/two_layer_wenner.dat``), the 189-datum
synthetic three-layer line (``examples/synthetic/three_layer.dat``), the ~1,000-datum
three-layer line of :mod:`benchmarks.inversion_bench` (written on first use, needs SimPEG)
and the 1,223-datum field line ``tests/data/ert/gimli_bedrock.dat``; smooth inversion,
the error models of :mod:`benchmarks.inversion_bench`.

For every solver importable in the running environment (SuperLU always; Pardiso needs
``pydiso``, MUMPS ``python-mumps``: recipes in ``docs/ert.md``) and every case, a row
records the seconds per iteration and in all, the iterations and χ², the seconds of one
forward response with its Jacobian at the start model and the part of them spent in the
solver (factorisation and solves), and the largest difference of ln ρ from SuperLU's
model in the same run.

Pardiso and MUMPS rarely share an environment (see ``docs/ert.md``), so run it once per
virtual environment: each run replaces its own entry (keyed by the interpreter's prefix)
in ``benchmarks/results/inversion_solvers.json``, with the CPU, numpy/scipy versions and
the load average before and after. ``--markdown`` prints the stored table.

Run: ``python -m benchmarks.solver_bench [--quick] [--repeat N] [--markdown]``
(``--quick``: the two small cases only; ``--repeat N``: each inversion N times, the
fastest kept, for a loaded machine).
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info
from langchain_setraf.ert import load_survey
from langchain_setraf.ert.model_section import InversionOptions

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "inversion_solvers.json"
LONG_LINE = ROOT / "benchmarks" / "data" / "three_layer_dd_1000.dat"

#: (name, path, InversionOptions keywords): the error models of benchmarks.inversion_bench.
CASES: list[tuple[str, Path, dict[str, Any]]] = [
    (
        "two_layer_wenner (bundled)",
        ROOT / "examples" / "two_layer_wenner.dat",
        {"error_percent": 1.0, "error_floor": 0.1},
    ),
    ("three_layer (synthetic, 189 data)", ROOT / "examples" / "synthetic" / "three_layer.dat", {}),
    ("three_layer_dd_1000 (synthetic)", LONG_LINE, {"error_percent": 2.0}),
    ("gimli_bedrock (field)", ROOT / "tests" / "data" / "ert" / "gimli_bedrock.dat", {}),
]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def forward_split(path: Path, solver: str) -> dict[str, float]:
    """Seconds of one forward response with Jacobian at a homogeneous model, and the part
    spent inside the solver (factorisation and solves), all wavenumbers in one thread."""
    import discretize
    import numpy as np

    from langchain_setraf.ert.forward2d import PoleForward
    from langchain_setraf.ert.invert import auto_nky, build_mesh
    from langchain_setraf.ert.solvers import Factoriser, pick_solver

    survey = load_survey(path)
    grid = build_mesh(survey, InversionOptions(), discretize)
    quads = []
    for q in survey.data:
        a, b, m, n = q.a, q.b, q.m, q.n
        if a is None:
            a, b = b, a
        if m is None:
            m, n = n, m
        quads.append((a, b, m, n))
    base = pick_solver(solver)  # type: ignore[arg-type]
    spent = [0.0]

    def factor(a: Any) -> Any:
        t = time.perf_counter()
        solve = base.factor(a)
        spent[0] += time.perf_counter() - t

        def timed(b: Any) -> Any:
            t = time.perf_counter()
            x = solve(b)
            spent[0] += time.perf_counter() - t
            return x

        return timed

    def factor_solve(a: Any, b: Any) -> Any:
        assert base.factor_solve is not None
        t = time.perf_counter()
        x = base.factor_solve(a, b)
        spent[0] += time.perf_counter() - t
        return x

    xs = sorted({x for x, _ in survey.electrodes})
    spacing = survey.spacing or float(np.median(np.diff(xs)))
    fw = PoleForward(
        grid.mesh,
        grid.active,
        grid.electrodes,
        quads,  # type: ignore[arg-type]
        nky=auto_nky(grid.x_max - grid.x_min, spacing),
        solver=Factoriser(
            base.name,
            factor,
            base.note,
            base.exclusive,
            factor_solve if base.factor_solve is not None else None,
        ),
        workers=1,
    )
    model = np.full(int(grid.active.sum()), np.log(1 / 100))
    fw.response(model, jacobian=False)  # warm-up
    spent[0] = 0.0
    t0 = time.perf_counter()
    fw.response(model)
    total = time.perf_counter() - t0
    return {"forward_jacobian_s": round(total, 3), "solver_s": round(spent[0], 3)}


def run(quick: bool, repeat: int = 1) -> dict[str, Any]:
    """Every installed solver on every case, the fastest of ``repeat`` inversions each
    (solvers interleaved); the environment's entry of the results."""
    import numpy as np

    from langchain_setraf.ert.invert import invert_survey
    from langchain_setraf.ert.solvers import available_solvers

    if not quick and not LONG_LINE.exists():
        from benchmarks.inversion_bench import make_long_line

        make_long_line(LONG_LINE)
    solvers = available_solvers()
    load_before = os.getloadavg()
    rows = []
    for case, path, kw in CASES[:2] if quick else CASES:
        survey = load_survey(path)
        models: dict[str, Any] = {}
        for solver in ("superlu", *(s for s in solvers if s != "superlu")):
            options = InversionOptions(solver=solver, **kw)  # type: ignore[arg-type]
            total = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                this = invert_survey(survey, options=options)
                if time.perf_counter() - t0 < total:
                    total, section = time.perf_counter() - t0, this
            models[solver] = np.log(np.asarray(section.rho))
            row = {
                "case": case,
                "n_data": len(section.rhoa_observed),
                "solver": section.solver,
                "nky": section.nky,
                "mesh_cells": section.mesh_cells,
                "iterations": section.iterations,
                "stopped_by": section.stopped_by,
                "chi2": round(section.chi2, 4),
                "setup_s": round(section.setup_s, 2),
                "s_per_iteration": round(section.seconds_per_iteration, 2),
                "total_s": round(total, 2),
                "max_dlnrho_vs_superlu": float(np.max(np.abs(models[solver] - models["superlu"]))),
                **forward_split(path, solver),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    load_after = os.getloadavg()
    cores = os.cpu_count() or 1
    return {
        "environment": sys.prefix,
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "pydiso": _version("pydiso"),
        "mkl": _version("mkl"),
        "python_mumps": _version("python-mumps"),
        "solvers": list(solvers),
        "machine": machine_info(),
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in load_after],
        "shared_machine": max(load_before[0], load_after[0]) > 0.5 * cores,
        "repeat": repeat,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """The stored results as one Markdown table (one row per environment, case and solver)."""
    lines = [
        "| case | data | solver | numpy | iterations | s / iteration | total s | forward+J s "
        "(solver s) | χ² | max Δln ρ vs SuperLU | load 1 min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run_ in result.get("runs", []):
        for r in run_["rows"]:
            lines.append(
                f"| {r['case']} | {r['n_data']} | {r['solver']} | {run_['numpy']} | "
                f"{r['iterations']} | {r['s_per_iteration']} | {r['total_s']} | "
                f"{r['forward_jacobian_s']} ({r['solver_s']}) | {r['chi2']} | "
                f"{r['max_dlnrho_vs_superlu']:.1e} | {r['load_avg_1m']} |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if "--markdown" in argv:
        print(markdown(json.loads(OUT.read_text("utf-8"))))
        return 0
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 1
    entry = run("--quick" in argv, repeat)
    result = json.loads(OUT.read_text("utf-8")) if OUT.exists() else {}
    runs = [r for r in result.get("runs", []) if r.get("environment") != entry["environment"]]
    result = {
        "description": "inversion per direct solver, one entry per virtual environment "
        "(python -m benchmarks.solver_bench); smooth regularisation",
        "runs": [*runs, entry],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
