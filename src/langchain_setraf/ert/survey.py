"""One internal representation for every ERT file: measured data or model cells."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["Cell", "DepthKind", "ERTFormatError", "Quadrupole", "Survey"]

#: What the depth of a cell means.
#: ``model`` — depth of an inverted model block; ``pseudo`` — Edwards median depth of
#: investigation of an apparent-resistivity datum (a plotting convention, not a depth);
#: ``log`` — depth of a direct measurement (borehole / direct-push log);
#: ``setraf`` — depth as the SETRAF app defines it for its own formats.
DepthKind = Literal["model", "pseudo", "log", "setraf"]


class ERTFormatError(ValueError):
    """A survey file does not match its format.

    Attributes:
        path: The file.
        line: 1-based line number (``None`` when the problem is not tied to one line).
        expected: What the reader expected to find.
    """

    def __init__(self, path: str | Path, line: int | None, expected: str) -> None:
        self.path = Path(path)
        self.line = line
        self.expected = expected
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {expected}")


@dataclass(frozen=True)
class Quadrupole:
    """One four-electrode measurement.

    Electrode fields are 0-based indices into :attr:`Survey.electrodes`; ``None`` means a
    remote electrode (pole at infinity).
    """

    a: int | None
    b: int | None
    m: int | None
    n: int | None
    rhoa: float
    """Apparent resistivity, Ω·m (computed as K·R when the file holds resistances)."""
    k: float | None = None
    """Geometric factor, m (flat-earth, when computed)."""
    resistance: float | None = None
    """Transfer resistance, Ω, when the file gives it."""
    ip: float | None = None
    err: float | None = None
    x_mid: float = 0.0
    """Mid-point of the quadrupole along the line, m."""
    pseudo_depth: float = 0.0
    """Edwards median depth of investigation, m (positive down)."""


@dataclass(frozen=True)
class Cell:
    """A resistivity value at a position along the line and a depth (positive down)."""

    x: float
    depth: float
    rho: float
    ip: float | None = None
    sensitivity: float | None = None


@dataclass
class Survey:
    """A survey file read into the package's one internal representation.

    Apparent-resistivity files fill :attr:`electrodes` and :attr:`data` (and :attr:`cells`
    with one pseudo-section point per datum); inverted models and logs fill :attr:`cells`.
    """

    path: Path
    format: str
    title: str = ""
    array: str | None = None
    spacing: float | None = None
    electrodes: list[tuple[float, float]] = field(default_factory=list)
    """Electrode positions ``(x, elevation)``, m."""
    data: list[Quadrupole] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    depth_kind: DepthKind = "model"
    topography: list[tuple[float, float]] = field(default_factory=list)
    ip_quantity: str | None = None
    ip_unit: str | None = None
    rms_percent: float | None = None
    value_kind: str = "resistivity"
    """``resistivity`` (model ρ, Ω·m) or ``apparent resistivity`` (ρa, Ω·m)."""
    notes: list[str] = field(default_factory=list)
    """Facts the reader noticed and corrected or could not check (shown to the user)."""

    @property
    def n_electrodes(self) -> int:
        return len(self.electrodes)

    @property
    def n_data(self) -> int:
        return len(self.data)

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    @property
    def has_sensitivity(self) -> bool:
        return any(c.sensitivity is not None for c in self.cells)

    @property
    def values(self) -> list[float]:
        """The resistivity values the survey holds (ρa of data, else ρ of cells)."""
        if self.data:
            return [q.rhoa for q in self.data]
        return [c.rho for c in self.cells]

    @property
    def value_range(self) -> tuple[float, float]:
        """(min, max) of :attr:`values`."""
        vals = self.values
        return (min(vals), max(vals)) if vals else (math.nan, math.nan)

    @property
    def line_length(self) -> float | None:
        """Span of the electrodes (or of the cells' x) in m."""
        xs = [e[0] for e in self.electrodes] or [c.x for c in self.cells]
        return (max(xs) - min(xs)) if xs else None

    @property
    def depth_range(self) -> tuple[float, float]:
        """(min, max) depth of the cells, m."""
        ds = [c.depth for c in self.cells]
        return (min(ds), max(ds)) if ds else (math.nan, math.nan)
