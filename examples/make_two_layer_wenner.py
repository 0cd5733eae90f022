"""Write ``two_layer_wenner.dat``: a synthetic Wenner-alpha line over two layers.

The apparent resistivities are the analytical solution for a layer of resistivity ρ1 and
thickness h over a half-space ρ2 (image series, Telford et al. 1990 §8.3):

    ρa/ρ1 = 1 + 4 Σ_{n≥1} kⁿ [ 1/√(1 + (2nh/a)²) − 1/√(4 + (2nh/a)²) ],  k = (ρ2−ρ1)/(ρ2+ρ1)

so the truth is known: 50 Ω·m clayey cover, 6 m thick, over 500 Ω·m bedrock.
Run ``python examples/make_two_layer_wenner.py`` to regenerate the file (the test suite
checks the committed file equals this output).
"""

from __future__ import annotations

import math
from pathlib import Path

RHO1, RHO2, H = 50.0, 500.0, 6.0
N_ELECTRODES, SPACING = 32, 2.0
A_FACTORS = range(1, 10)  # a = 2, 4, ... 18 m


def wenner_two_layer(a: float, rho1: float = RHO1, rho2: float = RHO2, h: float = H) -> float:
    k = (rho2 - rho1) / (rho2 + rho1)
    total = 0.0
    for n in range(1, 2000):
        r = 2 * n * h / a
        term = k**n * (1 / math.sqrt(1 + r * r) - 1 / math.sqrt(4 + r * r))
        total += term
        if abs(term) < 1e-12:
            break
    return rho1 * (1 + 4 * total)


def render() -> str:
    rows = []
    for m in A_FACTORS:
        a = m * SPACING
        rhoa = wenner_two_layer(a)
        # mid-point x-locations; electrodes C1 P1 P2 C2 at x0, x0+a, x0+2a, x0+3a
        x0 = 0.0
        while x0 + 3 * a <= (N_ELECTRODES - 1) * SPACING + 1e-9:
            rows.append(f"{x0 + 1.5 * a:.2f} {a:.2f} {rhoa:.3f}")
            x0 += SPACING
    head = [
        "Synthetic two-layer Wenner line: 50 ohm.m over 500 ohm.m, interface at 6 m",
        f"{SPACING:.1f}",
        "1",
        str(len(rows)),
        "1",
        "0",
    ]
    return "\n".join([*head, *rows, "0", "0", "0", "0", ""])


if __name__ == "__main__":
    out = Path(__file__).with_name("two_layer_wenner.dat")
    out.write_text(render(), encoding="ascii")
    print(f"wrote {out}")
