"""Inversion benchmark: seconds per iteration and in all, and a truth table (smooth vs blocky).

Cases: the bundled two-layer Wenner line, the committed synthetic dipole-dipole lines of
``examples/synthetic`` (3 % noise, error model 3 % + 0.5 Ω·m), a ~1,000-datum synthetic
three-layer line (120/15/800 Ω·m, interfaces 3 and 10 m; 2 % noise, forward-modelled by
SimPEG's ``Simulation2DNodal`` on a mesh twice as fine, so not an inverse crime) and the
1,223-datum field line ``tests/data/ert/gimli_bedrock.dat`` and two field lines with
topography (``gimli_slagdump.ohm``, 12.8 m of relief; ``resipy_res2dinv_dd.dat``, 61 m).
Each runs smooth and blocky.

Truth, for layered cases: the number of layers of :meth:`ModelSection.layers` equals the
truth's, each resistivity within ±25 % (a basement reported as a lower bound: the bound
holds, ≤ 125 % of the truth; the conductor above it: its conductance within ±25 %), each
interface within ±20 %; for block cases the extreme cell above the DOI lies inside the
block widened by one cell.

Run: ``python -m benchmarks.inversion_bench [--quick]`` → ``benchmarks/results/inversion.json``
(CPU, load average and solver recorded). ``--quick`` skips the field line and the
1,000-datum line. ``--simpeg-baseline`` adds to that file two iterations of the former
SimPEG ``Simulation2DNodal`` inversion on the 189-datum three-layer line, same machine.
``--markdown`` prints the stored results as the table of ``docs/interpretation.md``.
``--only TEXT`` runs the cases whose name contains ``TEXT`` and replaces their rows in the
stored file.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info
from langchain_setraf.ert import load_survey
from langchain_setraf.ert.invert import invert_survey
from langchain_setraf.ert.layering import LayeredModel, layered_model
from langchain_setraf.ert.model_section import InversionOptions, ModelSection

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "examples" / "synthetic"
OUT = ROOT / "benchmarks" / "results" / "inversion.json"
LONG_LINE = ROOT / "benchmarks" / "data" / "three_layer_dd_1000.dat"
LONG_TRUTH = {
    "kind": "layers",
    "layers": [
        {"top": 0.0, "bottom": 3.0, "rho": 120.0},
        {"top": 3.0, "bottom": 10.0, "rho": 15.0},
        {"top": 10.0, "bottom": None, "rho": 800.0},
    ],
}


def make_long_line(path: Path = LONG_LINE) -> None:
    """Write the ~1,000-datum three-layer dipole-dipole line (needs SimPEG)."""
    import discretize
    import numpy as np
    from simpeg import maps
    from simpeg.electromagnetics.static import resistivity as dc

    n_el, spacing = 64, 2.5
    quads = [
        (i, i + a, i + a + n * a, i + 2 * a + n * a)
        for a in (1, 2, 3)
        for n in range(1, 7)
        for i in range(n_el)
        if i + 2 * a + n * a < n_el
    ]
    x_e = np.arange(n_el) * spacing
    dx = spacing / 4
    ncx = int((x_e[-1] + 4 * spacing) / dx)
    mesh = discretize.TensorMesh(
        [[(dx, 12, -1.4), (dx, ncx), (dx, 12, 1.4)], [(dx / 2, 14, -1.3), (dx / 2, 100)]]
    )
    mesh.origin = np.r_[-2 * spacing - np.sum(mesh.h[0][:12]), -np.sum(mesh.h[1])]
    z = -mesh.cell_centers[:, 1]
    rho = np.where(z < 3.0, 120.0, np.where(z < 10.0, 15.0, 800.0))

    def loc(i: int) -> Any:
        return np.r_[x_e[i], 0.0]

    srcs = [
        dc.sources.Dipole([dc.receivers.Dipole(loc(m)[None], loc(n)[None])], loc(a), loc(b))
        for a, b, m, n in quads
    ]
    sim = dc.Simulation2DNodal(
        mesh,
        survey=dc.Survey(srcs),
        sigmaMap=maps.IdentityMap(mesh),
        miniaturize=True,  # one pole source per electrode: 64 solves per wavenumber
    )
    volts = sim.dpred(1.0 / rho)
    k = np.array(
        [
            2 * np.pi / (1 / abs(x_e[a] - x_e[m]) - 1 / abs(x_e[b] - x_e[m])
                         - 1 / abs(x_e[a] - x_e[n]) + 1 / abs(x_e[b] - x_e[n]))
            for a, b, m, n in quads
        ]
    )  # fmt: skip
    noisy = k * volts * (1 + 0.02 * np.random.default_rng(7).standard_normal(len(quads)))
    lines = [f"{n_el}", "# x z", *(f"{x:.2f} 0.00" for x in x_e), f"{len(quads)}"]
    lines += ["# a b m n rhoa"]
    lines += [
        f"{a + 1} {b + 1} {m + 1} {n + 1} {r:.4f}"
        for (a, b, m, n), r in zip(quads, noisy, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*lines, "0"]) + "\n", encoding="ascii")


def simpeg_baseline(path: Path, iterations: int = 2) -> dict[str, Any]:
    """The former inversion on the same machine: SimPEG ``Simulation2DNodal`` (one source per
    datum, full J stored, 7 wavenumbers, ``pymatsolver.SolverLU``, tensor mesh as now),
    ``iterations`` Gauss–Newton iterations; seconds per iteration."""
    import contextlib
    import io
    import warnings

    import discretize
    import numpy as np
    import pymatsolver
    from simpeg import data as sdata
    from simpeg import (
        data_misfit,
        directives,
        inverse_problem,
        inversion,
        maps,
        optimization,
        regularization,
    )
    from simpeg.electromagnetics.static import resistivity as dc

    from langchain_setraf.ert.invert import build_mesh

    survey = load_survey(path)
    grid = build_mesh(survey, InversionOptions(), discretize)
    mesh, el = grid.mesh, grid.electrodes
    srcs = []
    for q in survey.data:
        rx = dc.receivers.Dipole(el[q.m][None], el[q.n][None])
        srcs.append(dc.sources.Dipole([rx], el[q.a], el[q.b]))
    rhoa = np.array([q.rhoa for q in survey.data])
    t0 = time.perf_counter()
    times: list[float] = []
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        sim = dc.Simulation2DNodal(
            mesh,
            survey=dc.Survey(srcs),
            sigmaMap=maps.ExpMap(mesh),
            nky=7,
            storeJ=True,
            solver=pymatsolver.SolverLU,
        )
        rho0 = float(np.exp(np.median(np.log(rhoa))))
        m0 = np.full(mesh.n_cells, math.log(1 / rho0))
        k_num = rho0 / sim.dpred(m0)
        sim._Jmatrix = None
        std = (0.03 * rhoa + 0.5) / np.abs(k_num)
        data = sdata.Data(dc.Survey(srcs), dobs=rhoa / k_num, standard_deviation=std)
        sim.survey = data.survey
        reg = regularization.WeightedLeastSquares(
            mesh, alpha_s=1e-3, alpha_x=1.0, alpha_y=0.1, reference_model=m0
        )
        opt = optimization.InexactGaussNewton(maxIter=iterations, cg_maxiter=30)
        prob = inverse_problem.BaseInvProblem(
            data_misfit.L2DataMisfit(data=data, simulation=sim), reg, opt
        )

        class Clock(directives.InversionDirective):  # type: ignore[misc]
            def endIter(self) -> None:
                times.append(time.perf_counter())

        inv = inversion.BaseInversion(
            prob,
            directiveList=[
                directives.UpdateSensitivityWeights(every_iteration=False),
                directives.BetaEstimate_ByEig(beta0_ratio=10.0, random_seed=0),
                directives.BetaSchedule(coolingFactor=2.0, coolingRate=1),
                Clock(),
            ],
        )
        start = time.perf_counter()
        inv.run(m0)
    steps = [b - a for a, b in zip([start, *times], times, strict=False)]
    return {
        "tool": "SimPEG Simulation2DNodal (former setup), SolverLU",
        "case": path.name,
        "n_data": len(rhoa),
        "iterations": len(times),
        "s_per_iteration": round(sum(steps) / max(len(steps), 1), 2),
        "total_s": round(time.perf_counter() - t0, 1),
        "load_avg_1m": os.getloadavg()[0],
    }


def _layers_check(fit: LayeredModel, truth: dict[str, Any]) -> dict[str, Any]:
    """A layered model against a layered truth (see the module)."""
    want = truth["layers"]
    out: dict[str, Any] = {"units": fit.n_layers, "units_ok": fit.n_layers == len(want)}
    out["layers"] = [
        {
            "rho": round(lay.rho, 1),
            "top": round(lay.top_m, 2),
            "lower_bound": lay.lower_bound,
            **({"rho_sd_log": round(lay.rho_sd_log, 3)} if lay.rho_sd_log is not None else {}),
        }
        for lay in fit.layers
    ]
    out["interfaces"] = [
        [round(i.depth_m, 2), round(i.depth_min_m, 2), round(i.depth_max_m, 2)]
        for i in fit.interfaces
    ]
    if out["units_ok"]:
        rho_ok = []
        for got, w in zip(fit.layers, want, strict=True):
            if got.lower_bound:  # only a bound is claimed: it must hold
                rho_ok.append(got.rho <= 1.25 * w["rho"])
            else:
                rho_ok.append(abs(got.rho - w["rho"]) <= 0.25 * w["rho"])
        depth_ok = [
            abs(i.depth_m - w["bottom"]) <= 0.2 * w["bottom"]
            for i, w in zip(fit.interfaces, want, strict=False)
        ]
        out["rho_ok"] = all(rho_ok)
        out["interfaces_ok"] = all(depth_ok)
    out["unresolved"] = list(fit.unresolved)
    out["conductance_s"] = fit.conductance_s
    if fit.conductance_s is not None and len(want) >= 2 and want[-2]["bottom"]:
        true_s = (want[-2]["bottom"] - want[-2]["top"]) / want[-2]["rho"]
        out["conductance_true_s"] = round(true_s, 4)
        out["conductance_ok"] = abs(fit.conductance_s - true_s) <= 0.25 * true_s
    return out


def _dipping_check(section: ModelSection, truth: dict[str, Any], refined: bool) -> dict[str, Any]:
    """Interface depth at each truth column: from the refined fit's (dipping) interface, or
    (``refined=False``) from the layered reading of that column's cells (x ± 2 m)."""
    fit = section.layering
    errors, within = [], []
    for x in truth["tolerances"]["columns_x"]:
        want = truth["interface"]["depth_at_x0"] + truth["interface"]["slope"] * x
        if refined and fit is not None:
            depths = [i.depth_at(x) for i in fit.interfaces]
        else:
            cells = [
                (d, h, r)
                for cx, d, h, r in zip(
                    section.x, section.depth, section.height, section.rho, strict=True
                )
                if abs(cx - x) <= 2.0
            ]
            column = layered_model(*zip(*cells, strict=True), section.doi_m)  # type: ignore[arg-type]
            depths = [i.depth_m for i in column.interfaces]
        got = min(depths, key=lambda d: abs(d - want), default=0.0)
        errors.append(round(got - want, 2))
        within.append(abs(got - want) <= 0.2 * want)
    return {"interface_errors_m": errors, "interfaces_ok": all(within)}


def _refinement(fit: LayeredModel | None) -> dict[str, Any]:
    """How the units' layered model was made: fit of the data or the image's, and why."""
    if fit is None:
        return {"source": "image", "fallback": "not run"}
    out: dict[str, Any] = {"source": fit.source, "geometry": fit.geometry}
    if fit.chi2 is not None:
        out["chi2"] = round(fit.chi2, 3)
    if fit.fallback:
        out["fallback"] = fit.fallback
        out["rejected_chi2"] = round(fit.rejected_chi2 or math.nan, 3)
    out["interfaces"] = [
        {
            "depth_m": round(i.depth_m, 3),
            **({"depth_sd_m": round(i.depth_sd_m, 3)} if i.depth_sd_m is not None else {}),
            **(
                {"slope": round(i.slope, 4), "slope_sd": round(i.slope_sd or 0.0, 4)}
                if fit.geometry == "dipping"
                else {}
            ),
            "x_ref_m": round(i.x_ref_m, 2),
        }
        for i in fit.interfaces
    ]
    if fit.conductance_sd_s is not None:
        out["conductance_sd_s"] = round(fit.conductance_sd_s, 5)
    return out


def _truth_check(section: ModelSection, truth: dict[str, Any]) -> dict[str, Any]:
    """The truth columns: the units' layered model (refined against the data when kept) and,
    under ``image``, the same check on the section's own layered reading."""
    out: dict[str, Any] = {"refinement": _refinement(section.layering)}
    if truth.get("kind") == "layers":
        out.update(_layers_check(section.units_model(), truth))
        out["image"] = _layers_check(section.layers(), truth)
    elif truth.get("kind") == "dipping":
        out.update(_dipping_check(section, truth, refined=True))
        out["image"] = _dipping_check(section, truth, refined=False)
    elif truth.get("kind") == "block":
        block, background = truth["block"], truth["background"]
        cells = [
            (x, d, r, w, h)
            for x, d, r, w, h in zip(
                section.x, section.depth, section.rho, section.width, section.height, strict=True
            )
            if d < section.doi_m
        ]
        pick = min if block["rho"] < background else max
        x, d, r, w, h = pick(cells, key=lambda c: c[2])
        inside = (block["x_from"] - w <= x <= block["x_to"] + w) and (
            block["depth_from"] - h <= d <= block["depth_to"] + h
        )
        out.update(extreme={"x": x, "depth": round(d, 2), "rho": round(r, 1)}, box_ok=inside)
    return out


def data_scatter_percent(path: Path) -> float:
    """The data's own scatter, %: the robust spread (1.4826·MAD/√6) of the second
    differences of ln ρa between neighbouring stations of the same geometry.

    Smooth ground leaves only the noise in a second difference (its variance is 6σ²);
    lateral structure adds to it, so this is an upper bound of the noise (2.9 % on the
    3 %-noise synthetic three-layer line, 9 % on the synthetic block).
    """
    survey = load_survey(path)
    series: dict[tuple[int, int, int], list[tuple[int, float]]] = {}
    for q in survey.data:
        if q.a is None or q.b is None or q.m is None or q.n is None or q.rhoa <= 0:
            continue
        key = (q.b - q.a, q.m - q.b, q.n - q.m)
        series.setdefault(key, []).append((q.a, math.log(q.rhoa)))
    d2 = []
    for points in series.values():
        points.sort()
        for (a0, v0), (a1, v1), (a2, v2) in zip(points, points[1:], points[2:], strict=False):
            if a1 - a0 == 1 and a2 - a1 == 1:
                d2.append(v0 - 2 * v1 + v2)
    if not d2:
        return math.nan
    med = statistics.median(d2)
    mad = statistics.median(abs(v - med) for v in d2)
    return round(100 * 1.4826 * mad / math.sqrt(6), 1)


def _residuals(section: ModelSection) -> dict[str, float]:
    """How the misfit is spread: the median |normalised residual| (0.67 when the error
    model is right) and the share of χ² carried by the worst 5 % of the data."""
    opts = section.options
    r2 = sorted(
        ((p - o) / (opts.error_percent / 100 * abs(o) + opts.error_floor)) ** 2
        for o, p in zip(section.rhoa_observed, section.rhoa_predicted, strict=True)
    )
    worst = r2[len(r2) - max(1, len(r2) // 20) :]
    return {
        "residual_median_abs": round(math.sqrt(statistics.median(r2)), 2),
        "residual_worst5_share": round(sum(worst) / max(sum(r2), 1e-300), 2),
    }


def run_case(name: str, path: Path, truth: dict[str, Any], regularization: str, **kw: Any) -> Any:
    options = InversionOptions(regularization=regularization, max_iterations=15, **kw)
    t0 = time.perf_counter()
    section = invert_survey(load_survey(path), options=options)
    total = time.perf_counter() - t0
    row = {
        "case": name,
        "regularization": regularization,
        "n_data": len(section.rhoa_observed),
        "solver": section.solver,
        "solver_note": section.solver_note,
        "nky": section.nky,
        "mesh_cells": section.mesh_cells,
        "iterations": section.iterations,
        "stopped_by": section.stopped_by,
        "chi2": round(section.chi2, 3),
        "rms_percent": round(section.rms_percent, 2),
        "setup_s": round(section.setup_s, 2),
        "s_per_iteration": round(section.seconds_per_iteration, 2),
        "total_s": round(total, 1),
        "refine_s": round(section.refine_s, 1),
        "doi_m": round(section.doi_m, 2),
        "topography": bool(section.elevation),
        "load_avg_1m": os.getloadavg()[0],
        "error_percent": options.error_percent,
        "data_scatter_percent": data_scatter_percent(path),
        **_residuals(section),
        **_truth_check(section, truth),
    }
    print(json.dumps(row), flush=True)
    return row


def markdown(result: dict[str, Any]) -> str:
    """The results as the Markdown table of ``docs/interpretation.md``."""

    def ok(row: dict[str, Any]) -> str:
        if "units" in row:
            marks = [f"units {row['units']} {'✓' if row['units_ok'] else '✗'}"]
            for key, name in (
                ("rho_ok", "ρ"),
                ("interfaces_ok", "depths"),
                ("conductance_ok", "conductance"),
            ):
                if key in row:
                    marks.append(f"{name} {'✓' if row[key] else '✗'}")
            return ", ".join(marks)
        if "interface_errors_m" in row:
            errs = ", ".join(f"{e:+g}" for e in row["interface_errors_m"])
            return f"interface error {errs} m {'✓' if row['interfaces_ok'] else '✗'}"
        if "box_ok" in row:
            return f"anomaly in box {'✓' if row['box_ok'] else '✗'}"
        return "–"

    def layers(row: dict[str, Any]) -> str:
        if "layers" not in row:
            return "–"
        rho = " / ".join(
            ("≥ " if lay["lower_bound"] else "") + f"{lay['rho']:g}" for lay in row["layers"]
        )
        depths = ", ".join(f"{i[0]:g} ({i[1]:g}–{i[2]:g})" for i in row["interfaces"])
        return f"{rho} Ω·m; {depths} m" if depths else f"{rho} Ω·m"

    def fit(row: dict[str, Any]) -> str:
        ref = row.get("refinement", {})
        if ref.get("source") == "data":
            return f"data, {ref['geometry']}, χ² {ref['chi2']:.2f}"
        if "rejected_chi2" in ref:
            return f"image (data fit χ² {ref['rejected_chi2']:.3g} rejected)"
        return "image"

    lines = [
        "| case | data | regularisation | iterations | χ² | s/iteration | total s | "
        "of which layer fit | load | error / data scatter % | units from | "
        "layers: ρ; interfaces (range) | truth | truth, image's layers |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        image = r.get("image", {})
        lines.append(
            f"| {r['case']} | {r['n_data']} | {r['regularization']} | {r['iterations']} | "
            f"{r['chi2']:.2f} | {r['s_per_iteration']:.2f} | {r['total_s']:.1f} | "
            f"{r.get('refine_s', 0.0):.1f} | {r['load_avg_1m']:.1f} | "
            f"{r.get('error_percent', '–')} / {r.get('data_scatter_percent', '–')} | {fit(r)} | "
            f"{layers(r)} | {ok(r)} | {ok(image) if image else '–'} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    if "--markdown" in argv:
        print(markdown(json.loads(OUT.read_text("utf-8"))))
        return 0
    if "--simpeg-baseline" in argv:
        row = simpeg_baseline(SYNTHETIC / "three_layer.dat")
        print(json.dumps(row))
        result = json.loads(OUT.read_text("utf-8")) if OUT.exists() else {}
        result["simpeg_baseline"] = {**row, "machine": machine_info()}
        OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        return 0
    cases: list[tuple[str, Path, dict[str, Any], dict[str, Any]]] = [
        (
            "two_layer_wenner (bundled)",
            ROOT / "examples" / "two_layer_wenner.dat",
            {
                "kind": "layers",
                "layers": [
                    {"top": 0.0, "bottom": 6.0, "rho": 50.0},
                    {"top": 6.0, "bottom": None, "rho": 500.0},
                ],
            },
            {"error_percent": 1.0, "error_floor": 0.1},
        )
    ]
    for stem in ("three_layer", "conductive_block", "resistive_block", "dipping_interface"):
        truth = json.loads((SYNTHETIC / f"{stem}.truth.json").read_text("utf-8"))
        cases.append((stem, SYNTHETIC / f"{stem}.dat", truth, {}))
    if not quick:
        if not LONG_LINE.exists():
            make_long_line()
        cases.append(("three_layer_dd_1000", LONG_LINE, LONG_TRUTH, {"error_percent": 2.0}))
        cases.append(("gimli_bedrock (field)", ROOT / "tests/data/ert/gimli_bedrock.dat", {}, {}))
        data = ROOT / "tests" / "data" / "ert"
        cases.append(("gimli_slagdump (field, topography)", data / "gimli_slagdump.ohm", {}, {}))
        resipy = data / "resipy_res2dinv_dd.dat"
        cases.append(("resipy_res2dinv_dd (field, topography)", resipy, {}, {}))
        # its data scatter ~16 % between neighbouring stations: the error model to match
        cases.append(
            ("resipy_res2dinv_dd (field, topography), error 15 %", resipy, {},
             {"error_percent": 15.0}),
        )  # fmt: skip
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    rows = []
    for name, path, truth, kw in cases:
        if only is not None and only not in name:
            continue
        for reg in ("smooth", "blocky"):
            rows.append(run_case(name, path, truth, reg, **kw))
    result = {
        "machine": machine_info(),
        "cpus": os.cpu_count(),
        "load_avg_start_end": os.getloadavg(),
        "note": "the machine is shared with other jobs: see load_avg_1m per row",
        "rows": rows,
    }
    if only is None and OUT.exists():
        # a full run keeps the SimPEG baseline, which only --simpeg-baseline measures
        baseline = json.loads(OUT.read_text("utf-8")).get("simpeg_baseline")
        if baseline is not None:
            result["simpeg_baseline"] = baseline
    if only is not None and OUT.exists():
        # one case rerun: its rows replace the stored ones, the others stay
        stored = json.loads(OUT.read_text("utf-8"))
        done = {(r["case"], r["regularization"]) for r in rows}
        kept = [r for r in stored["rows"] if (r["case"], r["regularization"]) not in done]
        stored["rows"] = kept + rows
        stored.setdefault("reruns", []).append(
            {"only": only, "load_avg_start_end": result["load_avg_start_end"]}
        )
        result = stored
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0 if all(math.isfinite(r["chi2"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
