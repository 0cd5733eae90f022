"""Electrodes given in map coordinates (x, y) along one straight line → distance along it.

A 2-D line surveyed with GPS or total station is often stored with easting and northing
(pyGIMLi ``# x y z``). When every electrode lies close to one straight line, the line is
2-D: its electrodes are placed at their distance along the line.

Example:
    >>> line = StraightLine.fit([(0.0, 0.0), (3.0, 4.0), (6.0, 8.0)])
    >>> [round(line.distance(x, y), 6) for x, y in [(0.0, 0.0), (6.0, 8.0)]]
    [0.0, 10.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MAX_OFFSET_FRACTION", "StraightLine"]

#: Largest distance of an electrode from the fitted line, as a fraction of the line
#: length, for the layout to count as one straight line.
MAX_OFFSET_FRACTION = 0.02


@dataclass(frozen=True)
class StraightLine:
    """The best-fitting straight line through points, oriented from the first point."""

    cx: float
    cy: float
    cos: float
    sin: float
    origin: float
    """Distance of the line's start (the smallest projection) from the centroid."""
    max_offset: float
    """Largest distance of a fitted point from the line, m."""
    length: float

    @classmethod
    def fit(cls, points: Sequence[tuple[float, float]]) -> StraightLine | None:
        """The line through ``points`` (least squares), or ``None`` when they are not on one.

        ``None`` for fewer than two distinct points or when a point lies farther than
        :data:`MAX_OFFSET_FRACTION` of the line length from it.
        """
        if len(set(points)) < 2:
            return None
        n = len(points)
        cx = sum(p[0] for p in points) / n
        cy = sum(p[1] for p in points) / n
        sxx = sum((p[0] - cx) ** 2 for p in points)
        syy = sum((p[1] - cy) ** 2 for p in points)
        sxy = sum((p[0] - cx) * (p[1] - cy) for p in points)
        theta = 0.5 * math.atan2(2.0 * sxy, sxx - syy)
        cos, sin = math.cos(theta), math.sin(theta)
        along = [(x - cx) * cos + (y - cy) * sin for x, y in points]
        if along[-1] < along[0]:  # orient from the first point to the last
            cos, sin = -cos, -sin
            along = [-t for t in along]
        offsets = [abs(-(x - cx) * sin + (y - cy) * cos) for x, y in points]
        length = max(along) - min(along)
        if length <= 0 or max(offsets) > MAX_OFFSET_FRACTION * length:
            return None
        return cls(cx, cy, cos, sin, min(along), max(offsets), length)

    def distance(self, x: float, y: float) -> float:
        """Distance along the line of the projection of ``(x, y)``, from the line's start."""
        return (x - self.cx) * self.cos + (y - self.cy) * self.sin - self.origin
