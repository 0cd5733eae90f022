"""Electrode geometry: geometric factors and the Edwards median depth of investigation.

Both work for any four-electrode configuration on a flat surface (remote electrodes as
``None``), so every array type, the general array included, is handled the same way.

Example:
    >>> round(edwards_median_depth(0.0, 3.0, 1.0, 2.0), 3)  # Wenner alpha, a = 1 m
    0.519
"""

from __future__ import annotations

import functools
import math

from langchain_setraf.ert.i18n import Note

__all__ = ["edwards_median_depth", "electrode_pairs", "geometric_factor"]


def electrode_pairs(
    a: float | None, b: float | None, m: float | None, n: float | None
) -> list[tuple[float, float]]:
    """Signed current–potential pairs ``(sign, distance)``: +AM, −BM, −AN, +BN.

    Pairs with a remote electrode are dropped; coincident electrodes are an error.
    """
    pairs = []
    for sign, c, p in ((1.0, a, m), (-1.0, b, m), (-1.0, a, n), (1.0, b, n)):
        if c is None or p is None:
            continue
        r = abs(c - p)
        if r == 0:
            raise ValueError(Note("reader.same_position"))
        pairs.append((sign, r))
    if not pairs:
        raise ValueError(Note("reader.no_local"))
    return pairs


def geometric_factor(a: float | None, b: float | None, m: float | None, n: float | None) -> float:
    """Flat-earth geometric factor ``K = 2π / (1/AM − 1/BM − 1/AN + 1/BN)`` in m.

    Reference: ``../shared/docs/ert-reference.md`` §1.1 (checked there against 636 Syscal
    rows).

    Raises:
        ValueError: Degenerate geometry (the denominator is zero).
    """
    total = sum(sign / r for sign, r in electrode_pairs(a, b, m, n))
    if abs(total) < 1e-12:
        raise ValueError(Note("reader.infinite_k"))
    return 2.0 * math.pi / total


def edwards_median_depth(
    a: float | None, b: float | None, m: float | None, n: float | None
) -> float:
    """Edwards (1977) median depth of investigation of a quadrupole, m.

    For a homogeneous half-space the depth-integrated sensitivity of a pair at distance
    ``r`` from 0 to ``z`` is ``1/r − 1/√(r² + 4z²)``; summed with signs over the four pairs
    it reaches half its total at the median depth. Reproduces Loke's table (Wenner α
    0.519a, dipole-dipole n=1 0.416a, …) as recomputed in the ERT reference §5.2.
    """
    return _median_depth(tuple(electrode_pairs(a, b, m, n)))


@functools.lru_cache(maxsize=4096)
def _median_depth(pairs: tuple[tuple[float, float], ...]) -> float:
    """The bisection of :func:`edwards_median_depth`, cached by signed pair distances.

    The depth depends only on the pairs (not on where the quadrupole sits along the
    line), and a survey repeats a few hundred geometries over thousands of readings.
    """
    total = sum(sign / r for sign, r in pairs)
    if abs(total) < 1e-12:
        raise ValueError(Note("reader.zero_sensitivity"))

    def fraction(z: float) -> float:
        return sum(s * (1.0 / r - 1.0 / math.sqrt(r * r + 4 * z * z)) for s, r in pairs) / total

    lo, hi = 0.0, max(r for _, r in pairs)
    while fraction(hi) < 0.5:
        hi *= 2.0
        if hi > 1e9:
            raise ValueError(Note("reader.no_convergence"))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if fraction(mid) < 0.5:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
