"""Res2DInv ``.dat`` input files: index-based arrays (1-7) and the general array (11, 15).

Layout (``../shared/docs/ert-reference.md`` §1.1-1.2; Res2DInv manual §7 "Data file
format" as quoted by pyGIMLi ``importRes2dInv`` and ResIPy ``res2invInputParser``)::

    title
    unit electrode spacing (m)
    array type (1-7 index-based; 11 general array; 15 gradient)
    [11/15: sub-array type, 'Type of measurement (0=app. resistivity,1=resistance)', 0|1]
    [2/6: optional remote-electrode block]
    [1-7: optional 'Type of measurement' line and 0|1]                          [M]
    number of data
    type of x-location (0 first electrode, 1 mid-point; general array: 0, 1 or 2)
    IP flag (0|1; another positive flag followed by an IP quantity line is read as 1,
             as pyGIMLi does) [+ IP quantity, IP unit, timing line]
    ['Error estimate for data present' ['Type of error estimate (0=same unit as data)'] 0]
    data rows: index-based 'x a [n] value [ip] [err [iperr]]';
               general 'k x1 z1 .. xk zk value [ip] [err [iperr]]' (k = 2, 3 or 4)
    ['Topography in separate list'] topography flag (0 none, 1 true horizontal
    distances, 2 surface distances) [+ count, 'x z' rows, topography point number of
    the first electrode]
    trailing zero flags

Fields are separated by blanks, tabs or commas; lines may be padded with tabs; ``;``
starts a comment line (pyGIMLi). Resistances (measurement type 1) become ρa through the
flat-earth geometric factor. Rows with a = 0, n = 0 or coincident electrodes are dropped
with a note naming their lines.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from langchain_setraf.ert.i18n import Note
from langchain_setraf.ert.readers._lines import (
    NOT_FINITE,
    Lines,
    fields,
    positive,
    to_floats,
    to_int,
)
from langchain_setraf.ert.readers._quadrupoles import (
    Dropped,
    Position,
    Reading,
    build_data,
    interpolate,
)
from langchain_setraf.ert.survey import ERTFormatError, Survey

__all__ = ["ARRAYS", "index_electrodes", "read_res2dinv"]

#: Array type codes this reader understands.
ARRAYS = {
    1: "wenner-alpha",
    2: "pole-pole",
    3: "dipole-dipole",
    4: "wenner-beta",
    5: "wenner-gamma",
    6: "pole-dipole",
    7: "wenner-schlumberger",
    11: "general",
    15: "gradient",
}
#: Codes the manual defines that need electrodes off the line (or in boreholes).
_OFF_LINE = {
    8: "equatorial dipole-dipole (electrodes on two parallel lines)",
    10: "offset pole-dipole (electrodes off the line)",
    12: "cross-borehole (apparent resistivity)",
    13: "cross-borehole (resistance)",
}
_GENERAL = (11, 15)
#: Columns before IP/error of each index-based array: x a ρa, or x a n ρa.
_N_COLUMNS = {1: 3, 2: 3, 4: 3, 5: 3, 3: 4, 6: 4, 7: 4}
_TEXT = re.compile(r"^[^\d\s.+-]")  # a line that starts like a word, not a number
#: Text lines that may follow the IP flag but are not an IP quantity.
_NOT_IP = r"error\s+estimate|type\s+of|topography"


def index_electrodes(code: int, x: float, a: float, n: float, midpoint: bool) -> Position:
    """Electrode positions (A, B, M, N) of one index-based datum (reference §1.1).

    Args:
        code: Array type 1-7.
        x: The row's x-location.
        a: Electrode spacing of the datum.
        n: The n factor (1 for three-column arrays; negative = reverse pole-dipole).
        midpoint: ``x`` is the array mid-point (x-location type 1), else the left-most
            electrode (type 0).
    """
    if code in (1, 4, 5):
        x0 = x - 1.5 * a if midpoint else x
        p = [x0, x0 + a, x0 + 2 * a, x0 + 3 * a]
        if code == 1:  # C1 P1 P2 C2
            return p[0], p[3], p[1], p[2]
        if code == 4:  # C2 C1 P1 P2
            return p[1], p[0], p[2], p[3]
        return p[0], p[2], p[1], p[3]  # 5: C1 P1 C2 P2
    if code == 2:
        x0 = x - 0.5 * a if midpoint else x
        return x0, None, x0 + a, None
    if code == 3:  # C2 C1 ... P1 P2
        x0 = x - a * (n / 2 + 1) if midpoint else x
        return x0 + a, x0, x0 + a + n * a, x0 + 2 * a + n * a
    if code == 7:  # C1 P1 P2 C2
        x0 = x - a * (n + 0.5) if midpoint else x
        return x0, x0 + (2 * n + 1) * a, x0 + n * a, x0 + (n + 1) * a
    if code == 6:
        # forward (n > 0): C1 P1 P2 with P1 = C1 + n a; reverse (n < 0): P2 P1 C1.
        # The mid-point lies between C1 and P1 (as ResIPy reads it).
        na = abs(n) * a
        if n > 0:
            x0 = x - na / 2 if midpoint else x
            return x0, None, x0 + na, x0 + na + a
        x0 = x - a - na / 2 if midpoint else x
        return x0 + a + na, None, x0 + a, x0
    raise ValueError(f"array type {code}")  # pragma: no cover - filtered by the caller


@dataclass
class _Header:
    code: int
    resistance: bool = False
    xloc: int = 0
    n_data: int = 0
    n_ip: int = 0  # IP values per row (0: none, 1: one, g: spectral gates)
    has_err: bool = False
    notes: list[str] = field(default_factory=list)


def _array_code(lines: Lines) -> int:
    ln, line = lines.next("the array type code")
    tokens = fields(line)
    # pyGIMLi strips a trailing R or L from the code
    token = tokens[0].rstrip("RLrl") if len(tokens) == 1 else line
    code = to_int(lines.path, ln, token, "the array type code")
    if code in _OFF_LINE:
        raise lines.error(
            f"array type {code} ({_OFF_LINE[code]}) is not supported: this package reads "
            "2-D surface lines; expected 1-7 (index-based), 11 or 15 (general array)",
            ln,
        )
    if code not in ARRAYS:
        raise lines.error(
            f"array type {code} is not supported; expected 1-7 (index-based), 11 or 15 "
            "(general array)",
            ln,
        )
    return code


def _measurement_type(lines: Lines, required: bool) -> bool:
    """The 'Type of measurement' block; True when the values are resistances."""
    has_text = lines.peek_matches(r"type\s+of\s+(measurement|data)")
    if has_text:
        lines.next("the 'Type of measurement' line")
    elif not required:
        return False
    ln, mtype = lines.single_integer("the measurement type (0 = app. resistivity, 1 = resistance)")
    if mtype not in (0, 1):
        raise lines.error(f"expected measurement type 0 or 1, found {mtype}", ln)
    return mtype == 1


def _remote_block(lines: Lines, header: _Header) -> None:
    """Optional remote-electrode block of pole-pole / pole-dipole files."""
    if not lines.peek_matches(r"remote\s+electrodes?\s+included"):
        return
    lines.next("'Remote electrodes included'")
    while lines.peek_matches(r"[CP]2\s+remote\s+electrode"):
        _, label = lines.next("a remote electrode label")
        _, xyz = lines.numbers(f"the location of the {label.split()[0]} remote electrode", 3)
        header.notes.append(
            Note(
                "reader.remote",
                label=label.split()[0],
                x=f"{xyz[0]:g}",
                y=f"{xyz[1]:g}",
                z=f"{xyz[2]:g}",
            )
        )
    if lines.peek_matches(r"exact\s+geometric\s+factor"):
        lines.next("'Exact Geometric factor used'")


def _ip_block(lines: Lines, survey: Survey) -> int:
    """IP quantity, unit and timing; returns the number of IP values per data row."""
    for attr, what in (("ip_quantity", "the IP quantity (e.g. Chargeability)"),
                       ("ip_unit", "the IP unit (e.g. mV/V)")):  # fmt: skip
        ln, text = lines.next(what)
        if not _TEXT.match(text) or re.match(r"error\s+estimate|type\s+of", text, re.I):
            raise lines.error(f"expected {what} as text, found {text!r}", ln)
        setattr(survey, attr, text)
    ln, timing = lines.next("the IP timing line (delay, integration time)")
    nums = to_floats(lines.path, ln, timing, "the IP timing line", range(1, 64))
    if len(nums) <= 2:
        return 1
    # spectral IP (pyGIMLi): n_gates delay dt_1..dt_n on-time off-time
    gates = nums[0]
    if gates != int(gates) or gates < 1 or len(nums) != int(gates) + 4:
        raise lines.error(
            "expected an IP timing line 'delay, integration time' or 'n_gates delay "
            f"dt_1..dt_n on-time off-time', found {timing!r}",
            ln,
        )
    survey.notes.append(Note("reader.spectral_ip", gates=int(gates)))
    return int(gates)


def _error_block(lines: Lines) -> bool:
    if not lines.peek_matches(r"error\s+estimate"):
        return False
    lines.next("'Error estimate for data present'")
    if lines.peek_matches(r"type\s+of\s+error"):
        lines.next("the 'Type of error estimate' line")
    ln, etype = lines.single_integer("the type of error estimate (0 = same unit as data)")
    if etype != 0:
        raise lines.error(
            f"expected error-estimate type 0 (same unit as data), found {etype}: other types "
            "are not supported",
            ln,
        )
    return True


def _read_header(lines: Lines, survey: Survey) -> _Header:
    header = _Header(code=_array_code(lines))
    code = header.code
    survey.array = ARRAYS[code]
    if code in _GENERAL:
        _, sub = lines.single_integer("the general-array sub-type (0 = non-specific)")
        if sub in ARRAYS and sub != 11 and sub != code:
            survey.array = f"{ARRAYS[code]} ({ARRAYS[sub]})"
        header.resistance = _measurement_type(lines, required=True)
    else:
        if code in (2, 6):
            _remote_block(lines, header)
        header.resistance = _measurement_type(lines, required=False)
    ln, n_data = lines.single_integer("the number of data points")
    if n_data <= 0:
        raise lines.error(f"expected a positive number of data points, found {n_data}", ln)
    if n_data > lines.remaining:
        raise lines.error(
            f"the file declares {n_data} data points but has only {lines.remaining} lines left",
            ln,
        )
    header.n_data = n_data
    ln, xloc = lines.single_integer("the type of x-location")
    allowed = (0, 1, 2) if code in _GENERAL else (0, 1)
    if xloc not in allowed:
        meaning = (
            "0, 1 (true horizontal distance) or 2 (distance along the surface)"
            if code in _GENERAL
            else "0 (first electrode) or 1 (mid-point)"
        )
        raise lines.error(f"expected x-location type {meaning}, found {xloc}", ln)
    header.xloc = xloc
    ln, ip_flag = lines.single_integer("the IP flag (0 or 1)")
    if ip_flag > 1 and lines.peek_matches(r"[^\d\s.+-]") and not lines.peek_matches(_NOT_IP):
        # some exporters write another non-zero flag; pyGIMLi reads any non-zero as "IP"
        header.notes.append(Note("reader.ip_flag", flag=ip_flag, line=ln))
        ip_flag = 1
    if ip_flag not in (0, 1):
        raise lines.error(f"expected IP flag 0 or 1, found {ip_flag}", ln)
    header.n_ip = _ip_block(lines, survey) if ip_flag else 0
    header.has_err = _error_block(lines)
    return header


def _allowed_columns(base: int, header: _Header) -> tuple[int, ...]:
    plain = base + header.n_ip
    if not header.has_err:
        return (plain,)
    return (plain + 1, plain + 2) if header.n_ip else (plain + 1,)


def _reading(path: Path, ln: int, nums: list[float], at: int, header: _Header) -> Reading:
    """The value (and IP, error) starting at column ``at`` of a data row."""
    value = nums[at]
    ip = nums[at + 1] if header.n_ip else None
    err = None
    if header.has_err:
        err_abs = nums[at + 1 + header.n_ip]
        if err_abs < 0:
            raise ERTFormatError(path, ln, f"expected a non-negative error, found {err_abs}")
        err = abs(err_abs / value) if value else None
    return Reading(line=ln, value=value, ip=ip, err=err)


def _general_row(
    lines: Lines,
    what: str,
    header: _Header,
    heights: dict[float, tuple[float, int]],
    dropped: Dropped,
) -> tuple[Position, Reading] | None:
    """One general-array data row; ``None`` when it is dropped (a nan/inf value)."""
    ln, row = lines.next(what)
    tokens = fields(row)
    k = to_int(lines.path, ln, tokens[0] if tokens else row, f"the electrode count of {what}")
    if k not in (2, 3, 4):
        raise lines.error(f"expected 2, 3 or 4 electrodes in {what}, found {k}", ln)
    columns = _allowed_columns(2 + 2 * k, header)
    nums = to_floats(lines.path, ln, row, what, columns, finite=False)
    if not all(math.isfinite(v) for v in nums):
        dropped.add(ln, NOT_FINITE)
        return None
    xs = nums[1 : 1 + 2 * k : 2]
    zs = nums[2 : 2 + 2 * k : 2]
    for x, z in zip(xs, zs, strict=True):
        seen = heights.setdefault(round(x, 6), (z, ln))
        if abs(seen[0] - z) > 1e-3:
            raise lines.error(
                f"electrode at x={x:g} m has elevation {z:g} m here but {seen[0]:g} m on "
                f"line {seen[1]}; expected one elevation per electrode",
                ln,
            )
    pos: Position
    if k == 4:  # C1 C2 P1 P2
        pos = (xs[0], xs[1], xs[2], xs[3])
    elif k == 3:  # C1 P1 P2
        pos = (xs[0], None, xs[1], xs[2])
    else:  # C1 P1
        pos = (xs[0], None, xs[1], None)
    return pos, _reading(lines.path, ln, nums, 1 + 2 * k, header)


def _index_row(
    lines: Lines, what: str, header: _Header, dropped: Dropped
) -> tuple[Position, Reading] | None:
    """One index-based data row; ``None`` when it is dropped (a = 0 or n = 0)."""
    base = _N_COLUMNS[header.code]
    ln, nums = lines.numbers(what, _allowed_columns(base, header), finite=False)
    if not all(math.isfinite(v) for v in nums):
        dropped.add(ln, NOT_FINITE)
        return None
    x, a = nums[0], nums[1]
    if a < 0:
        raise lines.error(f"expected a positive electrode spacing a in {what}, found {a:g}", ln)
    n = nums[2] if base == 4 else 1.0
    if base == 4 and header.code != 6 and n < 0:
        raise lines.error(f"expected a positive n factor in {what}, found {n:g}", ln)
    reading = _reading(lines.path, ln, nums, base - 1, header)
    if a == 0 or n == 0:
        # every electrode (a = 0) or a current and a potential electrode (n = 0) coincide
        dropped.add(ln, Note("reader.coincide", a=f"{a:g}", n=f"{n:g}"))
        return None
    return index_electrodes(header.code, x, a, n, midpoint=header.xloc == 1), reading


def _topography(lines: Lines) -> tuple[list[tuple[float, float]], int | None, int]:
    """The topography block after the data: points, first-electrode point number, flag."""
    if lines.peek_matches(r"topography"):
        lines.next("'Topography in separate list'")
    if lines.peek() is None:
        return [], None, 0
    ln, flag = lines.integer("the topography flag (0, 1 or 2)")
    if flag not in (0, 1, 2):
        raise lines.error(f"expected topography flag 0, 1 or 2, found {flag}", ln)
    if flag == 0:
        return [], None, 0
    ln, m = lines.single_integer("the number of topography points")
    if m <= 0 or m > lines.remaining:
        raise lines.error(
            f"expected a number of topography points between 1 and {lines.remaining}, found {m}",
            ln,
        )
    topo = []
    for j in range(m):
        _, xz = lines.numbers(f"topography point {j + 1} of {m} (x elevation)", 2)
        topo.append((xz[0], xz[1]))
    first: int | None = None
    if lines.peek() is not None:
        ln, first = lines.integer("the topography point number of the first electrode")
        if not 1 <= first <= m:
            raise lines.error(
                f"expected the topography point number of the first electrode (1..{m}), "
                f"found {first}",
                ln,
            )
    return topo, first, flag


def _trailing(lines: Lines, n_data: int) -> str | None:
    """Consume the end flags; a note when a text-headed section follows them.

    RES2DMOD writes further sections after the end flags (``Additional measurements``,
    ``General array format``, its version line). Only the declared data block is read;
    the note names the lines left unread.
    """
    while (item := lines.peek()) is not None:  # end flags: numbers only
        if _TEXT.match(item[1]):
            first = item
            while lines.peek() is not None:
                last = lines.next("a line after the data")
            return Note(
                "reader.trailing",
                first=first[0],
                last=last[0],
                heading=repr(first[1][:40]),
                n=n_data,
            )
        to_floats(lines.path, item[0], item[1], "a trailing flag", range(1, 64))
        lines.next("a trailing flag")
    return None


def _shift_to_topography(
    survey: Survey, positions: list[Position], topo: list[tuple[float, float]], first: int
) -> list[Position]:
    """Put the first electrode on topography point ``first`` (the file's own rule)."""
    xs = [p for pos in positions for p in pos if p is not None]
    offset = round(min(xs) - topo[first - 1][0], 6)
    if not offset:
        return positions
    survey.notes.append(
        Note("reader.shifted", offset=f"{-offset:g}", point=first, x=f"{topo[first - 1][0]:g}")
    )
    return [
        (
            None if a is None else a - offset,
            None if b is None else b - offset,
            None if m is None else m - offset,
            None if n is None else n - offset,
        )
        for a, b, m, n in positions
    ]


def read_res2dinv(path: Path, text: str) -> Survey:
    """Read a Res2DInv index-based or general-array input file."""
    lines = Lines(path, text, comment=";")
    _, title = lines.next("a title line")
    ln, vals = lines.numbers("the unit electrode spacing (m)", 1)
    spacing = positive(path, ln, vals[0], "electrode spacing")
    survey = Survey(path=path, format="res2dinv", title=title)
    survey.spacing = spacing
    survey.value_kind = "apparent resistivity"
    survey.depth_kind = "pseudo"
    header = _read_header(lines, survey)
    survey.notes.extend(header.notes)

    general = header.code in _GENERAL
    heights: dict[float, tuple[float, int]] = {}
    positions: list[Position] = []
    readings: list[Reading] = []
    dropped = Dropped()
    for i in range(header.n_data):
        what = f"data row {i + 1} of {header.n_data}"
        if general:
            row: tuple[Position, Reading] | None = _general_row(
                lines, what, header, heights, dropped
            )
        else:
            row = _index_row(lines, what, header, dropped)
        if row is not None:
            positions.append(row[0])
            readings.append(row[1])
    if not positions:
        dropped.check(survey, 0)  # raises: no usable row

    topo, first, topo_flag = _topography(lines)
    if (rest := _trailing(lines, header.n_data)) is not None:
        survey.notes.append(rest)
    survey.topography = topo

    integrated = any(z for z, _ in heights.values())
    if integrated:
        elevation = {x: z for x, (z, _) in heights.items()}
        survey.notes.append(Note("reader.integrated"))
        if topo:
            survey.notes.append(Note("reader.topo_unused"))
        build_data(survey, positions, readings, header.resistance, lambda x: elevation[x], dropped)
    elif topo:
        if first is not None:
            positions = _shift_to_topography(survey, positions, topo, first)
        outside: list[float] = []

        def from_topo(x: float) -> float:
            z, clamped = interpolate(topo, x)
            if clamped:
                outside.append(x)
            return z

        build_data(survey, positions, readings, header.resistance, from_topo, dropped)
        if outside:
            survey.notes.append(Note("reader.outside_topo", n=len(outside)))
    else:
        build_data(survey, positions, readings, header.resistance, dropped=dropped)
    if (general and header.xloc == 2) or topo_flag == 2:
        survey.notes.append(Note("reader.surface_x"))
    if header.resistance:
        survey.notes.append(
            Note("reader.resistances_topo" if integrated or topo else "reader.resistances")
        )
    return survey
