"""pyGIMLi as a peer: its ERT inversion of the 189-datum synthetic three-layer line.

Runs in a virtual environment that has pyGIMLi and not this package (pyGIMLi's PyPI builds
pin numpy; see ``docs/ert.md``): the line is read here from its plain text (electrodes
``x z``, then ``a b m n ρa``). Same error model as ours (3 % + 0.5 Ω·m), pyGIMLi's own
mesh and defaults (``ERTManager.invert(lam=20)``). Records the pyGIMLi/pgcore/numpy
versions, seconds per iteration and in all, χ², the largest Jacobian entry (0 = the
all-zero Jacobian of the numpy-2 builds) and the median ρ at 1, 3.5 and 8 m under the
centre of the line (truth 200 / 30 / 500 Ω·m, interfaces 2 and 5 m); merged under
``peers`` (keyed by the three versions) into ``benchmarks/results/inversion_solvers.json``.

Run: ``python -m benchmarks.pygimli_peer`` from the repository root, with the pyGIMLi
venv's python.
"""

from __future__ import annotations

import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
LINE = ROOT / "examples" / "synthetic" / "three_layer.dat"
OUT = ROOT / "benchmarks" / "results" / "inversion_solvers.json"


def read_line(
    path: Path,
) -> tuple[list[tuple[float, float]], list[tuple[int, int, int, int, float]]]:
    """Electrodes and data of the plain-text line (1-based electrode numbers)."""
    rows = [r for r in path.read_text("ascii").splitlines() if r and not r.startswith("#")]
    n_el = int(rows[0])
    electrodes = [(float(r.split()[0]), float(r.split()[1])) for r in rows[1 : 1 + n_el]]
    n_data = int(rows[1 + n_el])
    data = []
    for r in rows[2 + n_el : 2 + n_el + n_data]:
        a, b, m, n, rho = r.split()[:5]
        data.append((int(a), int(b), int(m), int(n), float(rho)))
    return electrodes, data


def run() -> dict[str, Any]:
    import numpy as np
    import pygimli as pg
    from pygimli.physics import ert

    electrodes, rows = read_line(LINE)
    data = ert.DataContainer()
    for x, z in electrodes:
        data.createSensor([x, z])
    data.resize(len(rows))
    for k, token in enumerate("abmn"):
        data.set(token, [r[k] - 1 for r in rows])
    rhoa = np.array([r[4] for r in rows])
    data.set("rhoa", rhoa)
    data.set("k", ert.createGeometricFactors(data, numerical=False))
    data.set("err", 0.03 + 0.5 / rhoa)
    mgr = ert.ERTManager(data)
    t0 = time.perf_counter()
    model = np.asarray(mgr.invert(lam=20, verbose=False, maxIter=10))
    total = time.perf_counter() - t0
    jac = mgr.fop.jacobian()
    jac_max = max(float(np.abs(np.asarray(jac.row(i))).max()) for i in range(jac.rows()))
    centres = np.asarray(mgr.paraDomain.cellCenters())
    rho_at = {}
    for depth in (1.0, 3.5, 8.0):
        sel = (np.abs(-centres[:, 1] - depth) < 0.6) & (centres[:, 0] > 15) & (centres[:, 0] < 31)
        rho_at[f"{depth:g} m"] = round(float(np.median(model[sel])), 1) if sel.any() else None
    iterations = int(mgr.inv.inv.iter())
    return {
        "case": "three_layer (synthetic, 189 data)",
        "pygimli": pg.__version__,
        "pgcore": metadata.version("pgcore"),
        "numpy": np.__version__,
        "iterations": iterations,
        "total_s": round(total, 2),
        "s_per_iteration": round(total / max(iterations, 1), 2),
        "chi2": round(float(mgr.inv.chi2()), 3),
        "jacobian_abs_max": jac_max,
        "rho_at": rho_at,
        "truth": {"1 m": 200.0, "3.5 m": 30.0, "8 m": 500.0},
        "machine": machine_info(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    row = run()
    print(json.dumps(row))
    result = json.loads(OUT.read_text("utf-8")) if OUT.exists() else {}
    key = f"pygimli {row['pygimli']}, pgcore {row['pgcore']}, numpy {row['numpy']}"
    result.setdefault("peers", {})[key] = row
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0 if row["jacobian_abs_max"] > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
