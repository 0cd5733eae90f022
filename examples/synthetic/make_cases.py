"""Write the synthetic inversion test cases: data files + ``*.truth.json`` beside each.

Each case is a dipole-dipole line (24 electrodes, 2 m apart, dipoles of 2 and 4 m, n = 1…6)
over a known model, forward-modelled with SimPEG's own 2.5-D nodal simulation on a mesh
twice as fine as the inversion's (so the test is not an inverse crime), with Gaussian
noise of 3 % from a fixed seed. The files are in the pyGIMLi unified format
(``a b m n rhoa``) that :func:`langchain_setraf.ert.load_survey` reads.

Run ``python examples/synthetic/make_cases.py`` (needs the ``invert`` extra) to regenerate;
the tests read the committed files and do not regenerate them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import discretize
import numpy as np
from simpeg import maps
from simpeg.electromagnetics.static import resistivity as dc

HERE = Path(__file__).parent
N_ELECTRODES, SPACING = 24, 2.0
NOISE_PERCENT = 3.0
Model = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, depth) -> rho


def quadrupoles() -> list[tuple[int, int, int, int]]:
    """Dipole-dipole: A B (dipole a) … M N, a = 1, 2 electrode steps, n = 1…6."""
    out = []
    for a in (1, 2):
        for n in range(1, 7):
            for i in range(N_ELECTRODES):
                b, m = i + a, i + a + n * a
                nn = m + a
                if nn < N_ELECTRODES:
                    out.append((i, b, m, nn))
    return out


def forward(rho_of: Model) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """ρa of every quadrupole over a model, with the flat-earth geometric factor."""
    x_e = np.arange(N_ELECTRODES) * SPACING
    dx = SPACING / 4
    ncx = int((x_e[-1] - x_e[0] + 4 * SPACING) / dx)
    hx = [(dx, 12, -1.4), (dx, ncx), (dx, 12, 1.4)]
    hz = [(dx / 2, 12, -1.3), (dx / 2, 60)]  # 15 m of 0.25 m layers, padding below
    mesh = discretize.TensorMesh([hx, hz])
    mesh.origin = np.r_[-2 * SPACING - np.sum(mesh.h[0][:12]), -np.sum(mesh.h[1])]
    cc = mesh.cell_centers
    rho = rho_of(cc[:, 0], -cc[:, 1])
    quads = quadrupoles()

    def loc(i: int) -> np.ndarray:
        return np.r_[x_e[i], 0.0]

    srcs = [
        dc.sources.Dipole([dc.receivers.Dipole(loc(m)[None], loc(n)[None])], loc(a), loc(b))
        for a, b, m, n in quads
    ]
    sim = dc.Simulation2DNodal(mesh, survey=dc.Survey(srcs), sigmaMap=maps.IdentityMap(mesh))
    volts = sim.dpred(1.0 / rho)
    k = np.array(
        [
            2 * np.pi / (1 / abs(x_e[a] - x_e[m]) - 1 / abs(x_e[b] - x_e[m])
                         - 1 / abs(x_e[a] - x_e[n]) + 1 / abs(x_e[b] - x_e[n]))
            for a, b, m, n in quads
        ]
    )  # fmt: skip
    return quads, k * volts


def write_case(name: str, rho_of: Model, truth: dict[str, Any], seed: int) -> None:
    quads, rhoa = forward(rho_of)
    rng = np.random.default_rng(seed)
    noisy = rhoa * (1 + NOISE_PERCENT / 100 * rng.standard_normal(len(rhoa)))
    lines = [f"{N_ELECTRODES}", "# x z"]
    lines += [f"{i * SPACING:.2f} 0.00" for i in range(N_ELECTRODES)]
    lines += [f"{len(quads)}", "# a b m n rhoa"]
    lines += [
        f"{a + 1} {b + 1} {m + 1} {n + 1} {r:.4f}"
        for (a, b, m, n), r in zip(quads, noisy, strict=True)
    ]
    lines.append("0")
    (HERE / f"{name}.dat").write_text("\n".join(lines) + "\n", encoding="ascii")
    truth = {
        **truth,
        "noise_percent": NOISE_PERCENT,
        "seed": seed,
        "generator": Path(__file__).name,
    }
    (HERE / f"{name}.truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {name}.dat ({len(quads)} data) and {name}.truth.json")


def main() -> None:
    write_case(
        "three_layer",
        lambda x, z: np.where(z < 2.0, 200.0, np.where(z < 5.0, 30.0, 500.0)),
        {
            "kind": "layers",
            "layers": [
                {"top": 0.0, "bottom": 2.0, "rho": 200.0},
                {"top": 2.0, "bottom": 5.0, "rho": 30.0},
                {"top": 5.0, "bottom": None, "rho": 500.0},
            ],
            "tolerances": {
                "how": "interfaces: depth of the steepest log-resistivity change of the "
                "median profile of x 8-38 m (first: decrease, second: increase below the "
                "minimum); resistivities: profile at 0.5 m and at the deepest level above "
                "the depth of investigation; all inside the DOI",
                "first_interface_rel": 0.25,
                "second_interface_rel": 0.5,
                "second_interface_why": "below a thin conductor only its conductance "
                "(thickness/resistivity) is resolved (equivalence): a smooth inversion "
                "places the base of the conductor deeper",
                "rho_top_rel": 0.25,
                "rho_middle_max": 60.0,
                "rho_bottom_rel": 0.35,
                "rho_bottom_why": "the deepest level above the DOI is the least resolved, "
                "and its value depends on the CPU's BLAS kernels: 566 ohm.m with OpenBLAS's "
                "Haswell (AVX2) kernels, 628 ohm.m with its SkylakeX (AVX-512) kernels, same "
                "machine, same data",
            },
        },
        seed=1,
    )
    block = {"x_from": 18.0, "x_to": 26.0, "depth_from": 1.5, "depth_to": 4.5}
    block_tolerances = {
        "how": "the extreme cell above the DOI (minimum for a conductor, maximum for a "
        "resistor) lies within x_m of the block's centre along the line and depth_m of its "
        "centre depth, differs from the background by at least min_contrast times in the "
        "right direction, and the median of the section is the background within "
        "background_rel",
        "x_m": 2.0,
        "depth_m": 1.5,
        "min_contrast": 3.0,
        "background_rel": 0.15,
    }

    def in_block(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return (x >= 18.0) & (x <= 26.0) & (z >= 1.5) & (z <= 4.5)

    write_case(
        "conductive_block",
        lambda x, z: np.where(in_block(x, z), 10.0, 100.0),
        {
            "kind": "block",
            "background": 100.0,
            "block": {**block, "rho": 10.0},
            "tolerances": block_tolerances,
        },
        seed=2,
    )
    write_case(
        "resistive_block",
        lambda x, z: np.where(in_block(x, z), 1000.0, 100.0),
        {
            "kind": "block",
            "background": 100.0,
            "block": {**block, "rho": 1000.0},
            "tolerances": block_tolerances,
        },
        seed=3,
    )
    write_case(
        "dipping_interface",
        lambda x, z: np.where(z < 1.5 + 0.1 * x, 30.0, 300.0),
        {
            "kind": "dipping",
            "rho_above": 30.0,
            "rho_below": 300.0,
            "interface": {"depth_at_x0": 1.5, "slope": 0.1},
            "tolerances": {
                "how": "at each of columns_x, the steepest log-resistivity increase of the "
                "median profile of x ± 2 m lies within interface_m of the true depth, and "
                "the interface deepens from the first to the last column by at least "
                "min_dip_m",
                "columns_x": [6.0, 14.0, 22.0, 30.0, 38.0],
                "interface_m": 1.25,
                "min_dip_m": 2.0,
            },
        },
        seed=4,
    )


if __name__ == "__main__":
    main()
