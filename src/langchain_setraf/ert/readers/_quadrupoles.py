"""Turn electrode positions and readings into electrodes, quadrupoles and pseudo-section points.

Shared by the readers whose files give electrode positions in metres (Res2DInv, Syscal)
and, for the pseudo-section and array naming, by the unified-format reader.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from langchain_setraf.ert.geometry import edwards_median_depth, geometric_factor
from langchain_setraf.ert.i18n import Note
from langchain_setraf.ert.survey import Cell, ERTFormatError, Quadrupole, Survey

__all__ = [
    "Dropped",
    "Position",
    "Reading",
    "build_data",
    "guess_array",
    "interpolate",
    "reason_of",
    "set_pseudo_cells",
]

#: x of electrodes A, B, M, N along the line (m); ``None`` = remote (at infinity).
Position = tuple[float | None, float | None, float | None, float | None]


@dataclass(frozen=True)
class Reading:
    """One datum as the file gives it, with the line it came from."""

    line: int
    value: float
    """Apparent resistivity (Ω·m) or transfer resistance (Ω), as the file says."""
    ip: float | None = None
    err: float | None = None
    """Relative error (fraction)."""


#: The i18n key of each kind of entry :class:`Dropped` counts.
_WHAT = {
    "measurement row(s)": "reader.what.measurement",
    "reading(s)": "reader.what.reading",
    "row(s)": "reader.what.row",
}


def reason_of(exc: ValueError) -> str:
    """Why a row is unusable, from a geometry error (its :class:`Note` when it has one)."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, Note) else str(exc)


@dataclass
class Dropped:
    """Measurement rows left out of a survey (unusable, not malformed), with why.

    Real instruments write rows no reader can use: a current and a potential electrode
    at one position, an infinite geometric factor, a zero current. Such a row is left
    out and named in a note on the survey; the file is refused only when no usable row
    remains (:meth:`check`).
    """

    rows: list[tuple[int, str]] = field(default_factory=list)
    """``(line, reason)`` of each row left out, in file order."""
    what: str = "measurement row(s)"
    """What one entry is (``reading(s)`` where a row holds several measurements)."""

    #: Line numbers listed per reason in the note before "… and N more".
    MAX_LISTED = 20

    def add(self, line: int, reason: str) -> None:
        """Leave out the row at ``line`` because of ``reason``."""
        self.rows.append((line, reason))

    def note(self) -> str | None:
        """The survey note naming the rows left out (``None`` when none was)."""
        if not self.rows:
            return None
        by_reason: dict[str, list[int]] = {}
        for line, reason in self.rows:
            by_reason.setdefault(reason, []).append(line)
        parts = []
        for reason, lines in by_reason.items():
            listed = ", ".join(str(n) for n in lines[: self.MAX_LISTED])
            more = len(lines) - self.MAX_LISTED
            tail: str = Note("reader.dropped.more", more=more) if more > 0 else ""
            key = "reader.dropped.line" if len(lines) == 1 else "reader.dropped.lines"
            parts.append(Note(key, listed=listed, tail=tail, reason=reason))
        what = _WHAT.get(self.what)
        return Note(
            "reader.dropped",
            n=len(self.rows),
            what=Note(what) if what else self.what,
            parts=tuple(parts),
        )

    def check(self, survey: Survey, kept: int) -> None:
        """Add the note to ``survey``; raise when no row was kept.

        Raises:
            ERTFormatError: Every measurement row was dropped (names the first one; a
                single row's own reason when the file had only that one).
        """
        note = self.note()
        if kept == 0 and len(self.rows) == 1:  # the only row: its own reason says it best
            raise ERTFormatError(survey.path, self.rows[0][0], self.rows[0][1])
        if kept == 0:
            line = self.rows[0][0] if self.rows else None
            why = f": {note}" if note else ""
            raise ERTFormatError(survey.path, line, f"expected at least one usable data row{why}")
        if note:
            survey.notes.append(note)


def interpolate(points: Sequence[tuple[float, float]], x: float) -> tuple[float, bool]:
    """Linear interpolation of ``(x, z)`` points at ``x``; outside, the nearest end.

    Returns:
        The value and whether ``x`` lay outside the points (clamped).
    """
    pts = sorted(points)
    xs = [p[0] for p in pts]
    i = bisect.bisect_left(xs, x)
    if i < len(xs) and abs(xs[i] - x) < 1e-9:
        return pts[i][1], False
    if i == 0:
        return pts[0][1], True
    if i == len(xs):
        return pts[-1][1], True
    (x0, z0), (x1, z1) = pts[i - 1], pts[i]
    return z0 + (z1 - z0) * (x - x0) / (x1 - x0), False


def build_data(
    survey: Survey,
    positions: Sequence[Position],
    readings: Sequence[Reading],
    resistance_values: bool,
    elevation: Callable[[float], float] | None = None,
    dropped: Dropped | None = None,
) -> None:
    """Fill ``survey.electrodes``, ``survey.data`` and the pseudo-section cells.

    A datum with degenerate geometry (coincident current and potential electrodes,
    infinite geometric factor) is dropped and named in a note on the survey.

    Args:
        survey: The survey being read (its ``path`` names the file in errors).
        positions: Electrode x of each datum.
        readings: The datum values, same length as ``positions``.
        resistance_values: The values are resistances: ρa = K·R (flat-earth K).
        elevation: Elevation of an electrode at a given x (default: 0).
        dropped: Rows the reader already left out (their note is written here).

    Raises:
        ERTFormatError: No datum is usable.
    """
    dropped = dropped if dropped is not None else Dropped()
    usable: list[tuple[Position, Reading, float, float]] = []
    for pos, reading in zip(positions, readings, strict=True):
        try:
            k = geometric_factor(*pos)
            z_e = edwards_median_depth(*pos)
        except ValueError as exc:
            dropped.add(reading.line, reason_of(exc))
            continue
        usable.append((pos, reading, k, z_e))
    dropped.rows.sort()
    dropped.check(survey, len(usable))
    xs = sorted({round(p, 6) for pos, *_ in usable for p in pos if p is not None})
    index = {x: i for i, x in enumerate(xs)}
    survey.electrodes = [(x, elevation(x) if elevation else 0.0) for x in xs]
    data = []
    for pos, reading, k, z_e in usable:
        idx = [None if p is None else index[round(p, 6)] for p in pos]
        if resistance_values:
            rhoa, resistance = k * reading.value, reading.value
        else:
            rhoa, resistance = reading.value, None
        real = [p for p in pos if p is not None]
        data.append(
            Quadrupole(
                a=idx[0], b=idx[1], m=idx[2], n=idx[3], rhoa=rhoa, k=k, resistance=resistance,
                ip=reading.ip, err=reading.err, x_mid=sum(real) / len(real), pseudo_depth=z_e,
            )
        )  # fmt: skip
    survey.data = data
    set_pseudo_cells(survey)


def set_pseudo_cells(survey: Survey) -> None:
    """One pseudo-section point per datum with positive ρa (Edwards depth)."""
    survey.cells = [
        Cell(x=q.x_mid, depth=q.pseudo_depth, rho=q.rhoa, ip=q.ip)
        for q in survey.data
        if q.rhoa > 0
    ]
    if len(survey.cells) < len(survey.data):
        survey.notes.append(Note("reader.non_positive", n=len(survey.data) - len(survey.cells)))


def guess_array(survey: Survey) -> str:
    """Name the array of position-based data from the electrode order (or ``mixed``)."""
    kinds = set()
    for q in survey.data:
        if q.a is None or q.b is None or q.m is None or q.n is None:
            remote = [e is None for e in (q.a, q.b, q.m, q.n)]
            # one current and one potential electrode at infinity: pole-pole
            pole_pole = remote[0] != remote[1] and remote[2] != remote[3]
            kinds.add("pole-pole" if pole_pole else "pole-dipole")
            continue
        a, b, m, n = (survey.electrodes[i][0] for i in (q.a, q.b, q.m, q.n))
        lo, hi = sorted((a, b))
        if lo < min(m, n) and max(m, n) < hi:
            ratio = (min(m, n) - lo) / abs(m - n) if m != n else 0
            tol = 0.1 * abs(m - n)
            outer_ok = abs(hi - max(m, n) - abs(m - n)) <= tol
            is_wenner = abs(ratio - 1) <= 0.1 and outer_ok
            kinds.add("wenner-alpha" if is_wenner else "wenner-schlumberger")
        else:
            kinds.add("dipole-dipole")
    if kinds == {"wenner-alpha", "wenner-schlumberger"}:
        return "wenner-schlumberger"
    return kinds.pop() if len(kinds) == 1 else "mixed"
